#pragma once
// pe::detail::WriterPriorityMutex — a shared mutex whose waiting writers block
// new readers.
//
// Why not std::shared_mutex: on glibc it is a pthread rwlock that prefers
// readers, so a retriever under a steady stream of overlapping searches never
// lets add()/remove() in (measured: a writer waited over a minute behind three
// searching threads). Here a waiting writer stops new searches from starting,
// the running ones finish, the writer goes, then all queued searches resume.
//
// Thread safety: that is its job. Not recursive: a thread holding it shared
// must not lock it again (a queued writer would deadlock the pair).

#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace pe::detail {

class WriterPriorityMutex {
 public:
  void lock_shared() {
    std::unique_lock<std::mutex> guard(mutex_);
    readers_may_enter_.wait(guard, [&] { return !writer_active_ && writers_waiting_ == 0; });
    ++readers_;
  }

  void unlock_shared() {
    std::unique_lock<std::mutex> guard(mutex_);
    if (--readers_ == 0 && writers_waiting_ > 0) {
      guard.unlock();
      writer_may_enter_.notify_one();
    }
  }

  void lock() {
    std::unique_lock<std::mutex> guard(mutex_);
    ++writers_waiting_;
    writer_may_enter_.wait(guard, [&] { return !writer_active_ && readers_ == 0; });
    --writers_waiting_;
    writer_active_ = true;
  }

  void unlock() {
    std::unique_lock<std::mutex> guard(mutex_);
    writer_active_ = false;
    const bool writers = writers_waiting_ > 0;
    guard.unlock();
    if (writers) {
      writer_may_enter_.notify_one();
    } else {
      readers_may_enter_.notify_all();
    }
  }

 private:
  std::mutex mutex_;
  std::condition_variable readers_may_enter_;
  std::condition_variable writer_may_enter_;
  int64_t readers_ = 0;
  int64_t writers_waiting_ = 0;
  bool writer_active_ = false;
};

}  // namespace pe::detail
