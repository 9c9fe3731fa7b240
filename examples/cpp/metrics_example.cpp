// Scores a tiny ranking with pe::metrics and prints the leaderboard table.
//
// Gallery: 6 images of 3 products (ids 10, 10, 20, 30, 30, 30). Three queries:
//   product 10 (R = 2) ranked [0 2 3 1 4]: relevant at ranks 1, 4
//     P@1 = 1, P@5 = 2/5, R@1 = 1/2, R@5 = 1, AP@10 = (1/1 + 2/4) / min(2, 10) = 0.75
//   product 20 (R = 1) ranked [3 4 5 0 1]: never found, every metric 0
//   product 30 (R = 3) ranked [3 0 4 1 5]: relevant at ranks 1, 3, 5
//     P@1 = 1, P@5 = 3/5, R@1 = 1/3, R@5 = 1, AP@10 = (1 + 2/3 + 3/5) / 3 = 0.7556
// Means: P@1 66.67, P@5 33.33, R@1 27.78, R@5 66.67, mAP@10 50.19 (percent).

#include <pe/pe.hpp>

#include <cstdint>
#include <iostream>
#include <vector>

int main() {
  const std::vector<int64_t> gallery_ids{10, 10, 20, 30, 30, 30};
  const std::vector<int64_t> query_ids{10, 20, 30};
  const std::vector<int64_t> ranking{
      0, 2, 3, 1, 4,  //
      3, 4, 5, 0, 1,  //
      3, 0, 4, 1, 5,  //
  };
  const pe::metrics::Evaluation evaluation = pe::metrics::evaluate(ranking, query_ids, gallery_ids);

  pe::metrics::Report report;
  report.add("toy-catalogue", evaluation);
  std::cout << "perception_retrieval " << pe::version << "\n\n" << report.to_markdown();
  return 0;
}
