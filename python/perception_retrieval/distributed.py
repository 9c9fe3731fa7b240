"""Scale-out on a Dask cluster: encode, search and evaluate across many machines.

    from dask.distributed import Client
    from perception_retrieval import distributed, evaluation

    client = Client("tcp://scheduler-host:8786")                 # or distributed.connect(workers=4)
    embeddings = distributed.encode(client, "pe_l14.pt", paths)  # N x D float32, input order
    gallery = distributed.ShardedRetriever(client, 1024)         # one row shard per worker
    gallery.add(embeddings, ids)
    scores, found = gallery.search(queries, k=10)                # exactly Retriever's answer
    evaluation.Evaluation("pe_l14.pt", client=client).evaluate(...)

The cluster is Dask distributed's: its scheduler places the work, moves the
data and re-runs the tasks of a worker that died. Nothing here replaces it.

Encoding. The images are cut into the chunks the embedding cache writes (256 by
default, fewer images when that would leave workers idle, always whole
batches). Each chunk is one task; a worker process loads the TorchScript model
once (kept per process, keyed by the model's sha256 and the settings) and
encodes its chunks one at a time with pe::Encoder, using cores / (worker
processes on its host) LibTorch threads unless told otherwise. The client keeps
a bounded number of chunks in flight and writes each finished chunk to the
cache as it arrives, so rows land in input order, nothing is stored twice (a
chunk's result reaches the client once, whichever worker finished it) and a
re-run after the whole cluster died resumes from the last chunk received.

Images and the model reach the workers in one of two ways: by path, when every
worker mounts the same storage at the same path (the default; each worker
checks that the model file it reads has the client's sha256), or as bytes sent
from the client (send_images / send_model). Bytes sent this way are part of
the task itself, held by the scheduler while the chunk runs, so a chunk whose
worker died can be sent again.

Search. ShardedRetriever keeps the gallery as row pieces, each a Retriever held
in a worker's memory (or mapped from an index file on shared storage). A query
block goes to every piece; each piece returns its own top k; the client merges
them into the global top k. Scores are never recomputed by the merge, and the
pieces compute each score exactly as one Retriever over the whole gallery
would, so ids and scores are bitwise identical to Retriever.search (see
_query_blocks for the one thing that takes care).

Importing this module imports Dask; importing perception_retrieval does not.
Thread safety: the functions and ShardedRetriever's methods may be called from
one thread at a time per object; searches of one ShardedRetriever from several
threads are safe (they only read it), add/save/close are not.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import re
import socket
import tempfile
import threading
import time
import uuid
import warnings
from collections import Counter
from concurrent.futures import CancelledError
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

try:
    import dask
    from dask.distributed import Client, LocalCluster, get_worker, wait
except ImportError as error:  # pragma: no cover - depends on the install
    raise ImportError(
        "perception_retrieval.distributed needs Dask distributed: on Debian apt-get install python3-distributed "
        f"python3-dask, elsewhere pip install 'dask[distributed]' ({error})"
    ) from error

from . import __version__, cache as embedding_cache, errors, image
from ._native import Retriever, usable_cpu_count

Log = Callable[[str], None]

DEFAULT_CONNECT_TIMEOUT = 30.0   # seconds to reach a scheduler, and for a first worker to join
_MODEL_FOLDER = "perception-retrieval-models"   # under a worker's local directory (send_model)
_SIMD_ORDER = ("scalar", "avx2", "avx512")
_EVENT_INTERVAL = 0.5            # seconds between a worker's progress messages for one chunk
_INLINE_BYTES = 256 << 10        # arrays up to this size travel inside a search task


def _stderr(message: str) -> None:
    import sys

    print(message, file=sys.stderr, flush=True)


class ClusterError(errors.Error, RuntimeError):
    """The cluster could not finish the work: the scheduler went away, no
    worker is there, or a chunk kept killing the workers that ran it."""


class VersionMismatchError(errors.VersionMismatchError):
    """A worker runs another perception_retrieval or torch than the client."""


class SchedulerUnreachableError(errors.IoError, ConnectionError):
    """No Dask scheduler answered at the address within the timeout."""


def _file_error(error: OSError, message: str) -> errors.IoError:
    """An OSError met on a worker as the library's error, with a message that
    names the worker and the path."""
    if isinstance(error, FileNotFoundError):
        return errors.FileNotFoundError(message)
    return errors.IoError(message)


# ---------------------------------------------------------------------------
# Connecting


@contextlib.contextmanager
def connect(workers: Optional[int] = None, scheduler: Optional[str] = None, *,
            timeout: float = DEFAULT_CONNECT_TIMEOUT, log: Optional[Log] = _stderr) -> Iterator[Client]:
    """A dask.distributed Client for the duration of a with block.

    workers:   start a LocalCluster of this many worker processes on 127.0.0.1
               (one task thread each; the Encoder in each uses cores / workers
               LibTorch threads), closed again at the end;
    scheduler: or connect to the scheduler at this address, e.g.
               "tcp://scheduler-host:8786", and wait (up to `timeout` s) for a
               first worker.
    An unreachable scheduler raises ConnectionError naming the address after
    `timeout` seconds. The dashboard address is logged when there is one.
    """
    if (workers is None) == (scheduler is None):
        raise errors.InvalidArgumentError("connect() takes workers=N (a local cluster) or scheduler=ADDRESS (an existing one), "
                         "not both and not neither")
    if timeout <= 0:
        raise errors.InvalidArgumentError(f"timeout must be > 0 seconds, got {timeout}")
    cluster = None
    saved_environment = dict(os.environ)
    try:
        if workers is not None:
            cluster = _local_cluster(workers)
            client = Client(cluster, timeout=timeout)
        else:
            client = _connect_scheduler(scheduler, timeout)
            try:
                client.wait_for_workers(1, timeout=timeout)
            except (TimeoutError, asyncio.TimeoutError):
                client.close()
                raise ClusterError(f"no worker joined the Dask scheduler at {scheduler} within {timeout:g} s; "
                                   f"start workers with: python -m dask worker {scheduler}") from None
        try:
            if log:
                log(describe(client))
            yield client
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()
        # The Nanny writes its pre-spawn variables (thread counts, malloc trim)
        # into this process's environment before spawning workers; a library
        # is a guest here, so they are taken back out once the cluster is gone.
        for name in set(os.environ) - set(saved_environment):
            del os.environ[name]
        os.environ.update(saved_environment)


def _local_cluster(workers: int) -> LocalCluster:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise errors.InvalidArgumentError(f"workers must be an integer >= 1, got {workers!r}")
    per_worker = max(1, _cpu_count() // workers)
    # Dask starts worker processes with OMP/MKL/OPENBLAS_NUM_THREADS=1 (so that
    # many numpy tasks do not oversubscribe). The encoder sets LibTorch's own
    # count itself, but OpenBLAS (attention matmuls) only reads its variable
    # when it loads, so each worker gets its share of the cores here. A value
    # set in the environment already wins, as Dask documents.
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        environ[name] = per_worker
    # These processes are this call's, so it chooses for them what the command
    # line chooses for itself: idle OpenMP and OpenBLAS threads sleep instead of
    # spinning (process.PROCESS_ENVIRONMENT).
    from .process import PROCESS_ENVIRONMENT

    environ.update(PROCESS_ENVIRONMENT)
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                            dashboard_address="127.0.0.1:0", silence_logs=logging.WARNING)


def _connect_scheduler(address: str, timeout: float) -> Client:
    if not isinstance(address, str) or not address.strip():
        raise errors.InvalidArgumentError(f"scheduler must be an address such as tcp://scheduler-host:8786, got {address!r}")
    address = address.strip()
    if "://" not in address:
        address = "tcp://" + address
    try:
        return Client(address, timeout=timeout)
    except (OSError, TimeoutError, asyncio.TimeoutError) as error:
        raise SchedulerUnreachableError(
            f"could not reach the Dask scheduler at {address} within {timeout:g} s ({error}); check that "
            "'dask scheduler' runs there, that the port is open from this machine, and the address "
            "(tcp://HOST:PORT, default port 8786)") from None
    except ValueError as error:
        raise errors.InvalidArgumentError(f"scheduler address {address!r} is not usable: {error}") from None


def _scheduler_info(client: Client) -> dict:
    """The scheduler's description with every worker: since 2025 Dask lists at
    most 5 unless asked for all (n_workers=-1), which 2022.12 does not take."""
    try:
        return client.scheduler_info(n_workers=-1)
    except TypeError:
        return client.scheduler_info()


def describe(client: Client) -> str:
    """One line about the cluster: scheduler, workers, threads, dashboard."""
    info = _scheduler_info(client)
    workers = info.get("workers", {})
    hosts = len({w.get("host") for w in workers.values()})
    threads = sum(int(w.get("nthreads", 0)) for w in workers.values())
    line = (f"Dask cluster {info.get('address', '?')}: {len(workers)} worker processes on {hosts} "
            f"host{'s' if hosts != 1 else ''}, {threads} task threads")
    if "dashboard" in info.get("services", {}):
        if _scheduler_has_bokeh(client):
            line += f"; dashboard {client.dashboard_link}"
        else:
            line += "; no dashboard (Dask's dashboard needs bokeh where the scheduler runs)"
    return line


def _scheduler_has_bokeh(client: Client) -> bool:
    try:
        return bool(client.run_on_scheduler(lambda: __import__("importlib.util").util.find_spec("bokeh") is not None))
    except Exception:  # noqa: BLE001 - only decides how the dashboard line reads
        return importlib.util.find_spec("bokeh") is not None


# ---------------------------------------------------------------------------
# Checks every worker passes before work is sent (and again in each task, for
# workers that join later)


def _client_versions() -> Dict[str, str]:
    import torch

    return {"perception_retrieval": __version__, "torch": torch.__version__}


def _cpu_count() -> int:
    """The CPUs this process may use (affinity mask and cgroup quota)."""
    return max(1, usable_cpu_count())


def _where(worker) -> str:
    return f"worker {worker.address} (host {socket.gethostname()})"


def _check_versions(expected: Dict[str, str], where: str) -> None:
    import torch

    import perception_retrieval

    here = {"perception_retrieval": perception_retrieval.__version__, "torch": torch.__version__}
    if here != expected:
        raise VersionMismatchError(
            f"{where} runs perception_retrieval {here['perception_retrieval']} with torch {here['torch']}, but the "
            f"client runs perception_retrieval {expected['perception_retrieval']} with torch {expected['torch']}; "
            "install the same perception_retrieval and torch on every worker (and the client)")


def _worker_report(model_path: Optional[str] = None, dask_worker=None) -> dict:
    import torch

    import perception_retrieval

    report = {"perception_retrieval": perception_retrieval.__version__, "torch": torch.__version__,
              "hostname": socket.gethostname(), "cpus": _cpu_count()}
    if model_path is not None:
        try:
            with open(model_path, "rb") as handle:
                handle.read(1)
        except OSError as error:
            report["model_error"] = (type(error).__name__, error.strerror or str(error))
    return report


def check_workers(client: Client, model_path: Optional[str] = None) -> Dict[str, dict]:
    """Asks every worker for its perception_retrieval and torch versions (and,
    with model_path, whether it can open that file); raises naming each worker
    that differs from the client or cannot read the model. Returns the reports."""
    workers = sorted(_scheduler_info(client).get("workers", {}))
    if not workers:
        raise ClusterError(f"the Dask cluster at {client.scheduler.address} has no workers; start some with: "
                           f"python -m dask worker {client.scheduler.address}")
    answers = client.run(_worker_report, model_path, on_error="return")
    reports, broken = {}, []
    for address, answer in sorted(answers.items()):
        if isinstance(answer, dict):
            reports[address] = answer
        elif not isinstance(answer, OSError):  # OSError: the worker left meanwhile; the scheduler re-plans
            broken.append(f"worker {address}: {type(answer).__name__}: {answer}")
    if broken:
        raise VersionMismatchError(
            "perception_retrieval cannot run on " + "; ".join(broken) + f". Install the client's perception_retrieval "
            f"{__version__} and its torch on every worker, and start the workers with that Python "
            "(python -m dask worker ...)")
    expected = _client_versions()
    differing = [f"worker {address} (host {report['hostname']}) runs perception_retrieval "
                 f"{report['perception_retrieval']} with torch {report['torch']}"
                 for address, report in sorted(reports.items())
                 if {k: report[k] for k in expected} != expected]
    if differing:
        raise VersionMismatchError(
            f"the client runs perception_retrieval {expected['perception_retrieval']} with torch "
            f"{expected['torch']}, but " + "; ".join(differing) + ". Install the same perception_retrieval and "
            "torch on every worker (and the client); such workers are refused because their embeddings would "
            "not match the cache")
    unreadable = [(address, report) for address, report in sorted(reports.items()) if "model_error" in report]
    if unreadable:
        kind = unreadable[0][1]["model_error"][0]
        error_type = errors.FileNotFoundError if kind == "FileNotFoundError" else errors.IoError
        listed = "; ".join(f"worker {address} (host {report['hostname']}): {report['model_error'][1]}"
                           for address, report in unreadable)
        raise error_type(f"the model file {model_path} cannot be read by {listed}. Put the model on storage every "
                         "worker mounts at the same path, or send it from the client (send_model=True; "
                         "--send-model on the command line)")
    return reports


def _host_workers(client: Client) -> Dict[str, int]:
    """Worker processes per host address: each splits its host's cores evenly."""
    return dict(Counter(w.get("host") for w in _scheduler_info(client).get("workers", {}).values()))


def _default_threads(worker, host_workers: Dict[str, int]) -> int:
    from distributed.comm import get_address_host

    sharing = host_workers.get(get_address_host(worker.address), 1)
    return max(1, _cpu_count() // max(1, sharing))


def _worker_resources(worker) -> Dict[str, float]:
    state = getattr(worker, "state", None)
    resources = getattr(state, "total_resources", None)
    if resources is None:  # distributed before the WorkerState split
        resources = getattr(worker, "total_resources", {}) or {}
    return dict(resources)


def worker_device(requested: str, resources: Dict[str, float]) -> str:
    """The device a worker encodes on. "worker" means: from the worker's Dask
    resources, a resource named cuda:N (dask worker --resources cuda:1=1) picks
    that GPU, one named GPU or cuda picks "cuda" (the first visible GPU, e.g.
    with CUDA_VISIBLE_DEVICES set per worker), none means "cpu". Any other
    value (cpu, cuda, cuda:N) is used as given on every worker."""
    if requested != "worker":
        return requested
    for name in sorted(resources):
        if re.fullmatch(r"cuda:\d+", name) and resources[name] > 0:
            return name
    if any(resources.get(name, 0) > 0 for name in ("GPU", "gpu", "cuda", "CUDA")):
        return "cuda"
    return "cpu"


# ---------------------------------------------------------------------------
# Worker side of encoding. Module state lives in each worker process.

_worker_lock = threading.Lock()      # guards the two dicts below
_encode_lock = threading.Lock()      # one chunk encodes at a time per process: the
                                     # Encoder already uses the cores it was given
_worker_encoders: Dict[tuple, tuple] = {}
_model_hashes: Dict[tuple, str] = {}


def _model_file(model: dict, model_bytes: Optional[bytes], worker, where: str) -> str:
    """The local path of the model on this worker, checked to be the client's file."""
    if model_bytes is not None:
        folder = os.path.join(worker.local_directory, _MODEL_FOLDER)
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, model["sha256"][:32] + ".pt")
        if not os.path.isfile(path) or os.path.getsize(path) != len(model_bytes):
            handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=folder)
            with os.fdopen(handle, "wb") as out:
                out.write(model_bytes)
            os.replace(temporary, path)
        return path
    path = model["path"]
    try:
        status = os.stat(path)
        memo = (path, status.st_size, status.st_mtime_ns)
        digest = _model_hashes.get(memo)
        if digest is None:
            digest = embedding_cache.file_sha256(path)
            _model_hashes[memo] = digest
    except OSError as error:
        raise _file_error(error, (
            f"{where} cannot read the model file {path}: {error.strerror or error}. Put the model on storage every "
            "worker mounts at the same path, or send it from the client (send_model=True; --send-model on the "
            "command line)")) from None
    if digest != model["sha256"]:
        raise errors.InvalidArgumentError(f"{where} reads another model file at {path} (sha256 {digest[:16]}) than the client "
                         f"(sha256 {model['sha256'][:16]}); copy the client's file there, or send it from the "
                         "client (send_model=True; --send-model)")
    return path


def _worker_encoder(model: dict, model_bytes: Optional[bytes], settings: dict, worker, where: str):
    from .encoder import Encoder

    device = worker_device(settings["device"], _worker_resources(worker))
    key = (model["sha256"], device, settings["dtype"], settings["batch_size"], settings["threads"],
           settings["decode_threads"], settings["tune_allocator"])
    with _worker_lock:
        found = _worker_encoders.get(key)
        if found is not None:
            return found
        path = _model_file(model, model_bytes, worker, where)
        threads = settings["threads"] or _default_threads(worker, settings["host_workers"])
        decode_threads = settings["decode_threads"] or threads
        try:
            encoder = Encoder(path, device=device, batch_size=settings["batch_size"], threads=threads,
                              decode_threads=decode_threads, dtype=settings["dtype"],
                              tune_allocator=settings["tune_allocator"])
        except errors.Error as error:
            raise type(error)(f"{where} could not load the model {model['path']} on {device}: {error}") from None
        _worker_encoders.clear()  # one model per process: a new one replaces the old
        _worker_encoders[key] = (encoder, device, threads)
        return _worker_encoders[key]


def _native(array):
    """The same array with numpy's own dtype object (a view, no copy). Arrays
    that crossed a process boundary were unpickled with a dtype that equals
    numpy's but is another object, and the bindings compare dtypes by identity
    (they refuse "float32, got float32")."""
    if isinstance(array, np.ndarray) and array.dtype.fields is None and array.dtype == np.dtype(array.dtype.type) \
            and array.dtype is not np.dtype(array.dtype.type):
        return array.view(array.dtype.type)
    return array


def _named(name: str, reason: str) -> str:
    return reason if name in reason else f"{name}: {reason}"


def _post(worker, topic: str, chunk: int, done: int) -> None:
    try:
        worker.log_event(topic, {"chunk": chunk, "done": int(done)})
    except Exception:  # noqa: BLE001 - progress is best effort, the result is what counts
        pass


def _raise_first_failure(encoder, inputs: list, kept: List[int], names: List[str], first: Tuple[int, str]) -> None:
    """Raises what one process raises for the first unreadable image: the
    Encoder's own error class (FileNotFoundError, CorruptFileError, ...), with
    a message naming the image even when its bytes came from the client."""
    index, reason = first
    if index in kept:
        try:
            encoder.encode([inputs[kept.index(index)]])
        except errors.Error as error:
            raise type(error)(_named(names[index], str(error))) from None
    raise errors.CorruptFileError(reason)


def _encode_chunk(model_bytes, model: dict, settings: dict, expected: Dict[str, str], topic: str, chunk: int,
                  items: list, names: list, on_error: str) -> dict:
    """One chunk on a worker. items[i] = (source, crop): source a path, encoded
    bytes or an H x W x 3 uint8 array; crop None or (x, y, w, h). Mirrors the
    chunk body of Evaluation.embed, so batches (and so embeddings) are the same
    as in one process."""
    worker = get_worker()
    where = _where(worker)
    _check_versions(expected, where)
    encoder, device, threads = _worker_encoder(model, model_bytes, settings, worker, where)
    inputs, kept, failures = [], [], []
    for i, (source, crop) in enumerate(items):
        if crop is None:
            inputs.append(_native(source))
            kept.append(i)
            continue
        try:
            pixels = image.decode(source)
            x, y, w, h = crop
            inputs.append(np.ascontiguousarray(pixels[y:y + h, x:x + w]))
            kept.append(i)
        except errors.Error as error:
            if on_error == "raise":
                raise type(error)(_named(names[i], str(error))) from None
            failures.append((i, _named(names[i], str(error))))
    base = len(items) - len(kept)
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= _EVENT_INTERVAL or done >= total:
            last[0] = now
            _post(worker, topic, chunk, base + done)

    with _encode_lock:
        _post(worker, topic, chunk, base)
        if inputs:
            # skip mode in both cases: a failure is then raised naming its
            # input, which for bytes sent from the client the Encoder cannot.
            embeddings, rows, encode_failures = encoder.encode(inputs, on_error="skip", progress=progress)
        else:
            embeddings = np.zeros((0, encoder.embedding_dim), dtype=np.float32)
            rows, encode_failures = np.zeros(0, dtype=np.int64), []
    for row, reason in encode_failures:
        failures.append((kept[row], _named(names[kept[row]], reason)))
    if failures and on_error == "raise":
        _raise_first_failure(encoder, inputs, kept, names, min(failures))
    failures.sort()
    done = [kept[row] for row in np.asarray(rows, dtype=np.int64).tolist()]
    return {"embeddings": np.ascontiguousarray(embeddings, dtype=np.float32), "rows": done, "failures": failures,
            "dim": int(encoder.embedding_dim), "worker": worker.address, "device": device, "threads": threads}


# ---------------------------------------------------------------------------
# Client side of encoding


@dataclass
class _Chunk:
    number: int
    positions: List[int]          # caller's indices of the chunk's images, in order
    names: List[str]              # how failures name each image (its path)
    items: Callable[[], list]     # builds the task's items when it is submitted


class _Progress:
    """Images done across the cluster: finished chunks plus the latest count
    each running chunk reported (a retried chunk starts again from its own 0)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._running: Dict[int, int] = {}
        self.finished = 0

    def event(self, event) -> None:  # runs on the client's event loop thread
        message = event[1] if isinstance(event, (tuple, list)) and len(event) == 2 else event
        try:
            chunk, done = int(message["chunk"]), int(message["done"])
        except (KeyError, TypeError, ValueError):
            return
        with self._lock:
            if chunk in self._running:
                self._running[chunk] = done

    def started(self, chunk: int) -> None:
        with self._lock:
            self._running[chunk] = 0

    def finish(self, chunk: int, size: int) -> None:
        with self._lock:
            self._running.pop(chunk, None)
            self.finished += size

    def done(self) -> int:
        with self._lock:
            return self.finished + sum(self._running.values())


def _run_chunks(client: Client, model_path: str, model_sha256: str, settings: dict, chunks: Sequence[_Chunk],
                on_error: str, on_result: Callable[[_Chunk, dict], None], on_progress: Callable[[int], None],
                send_model: bool = False, resources: Optional[Dict[str, float]] = None,
                on_chunk_finished: Optional[Callable[[], None]] = None) -> None:
    """Runs every chunk on the cluster, calling on_result(chunk, result) in the
    calling thread as each finishes (in completion order), then on_progress(images
    done) and on_chunk_finished(); on_progress also about twice a second while
    chunks run. Bounded in flight: about two chunks per task thread, so bytes
    sent from the client and results waiting for the client stay small."""
    if not chunks:
        return
    check_workers(client, None if send_model else model_path)
    model = {"path": model_path, "sha256": model_sha256}
    settings = {**settings, "host_workers": _host_workers(client)}
    expected = _client_versions()
    model_bytes = None
    if send_model:
        with open(model_path, "rb") as handle:
            model_bytes = client.scatter(handle.read(), hash=False)
        # Every task depends on the model; copied to every worker up front (peer
        # to peer), the scheduler places chunks by load instead of by where the
        # one copy is.
        client.replicate([model_bytes])
    topic = f"perception-retrieval-progress-{uuid.uuid4().hex}"
    progress = _Progress()
    client.subscribe_topic(topic, progress.event)
    pending: Dict[object, _Chunk] = {}
    queue = list(chunks)
    queue.reverse()
    address = client.scheduler.address
    reported = [-1]

    def report() -> None:
        done = progress.done()
        if done != reported[0]:
            reported[0] = done
            on_progress(done)

    try:
        while queue or pending:
            limit = max(4, 2 * sum(int(w.get("nthreads", 1)) for w in _scheduler_info(client)["workers"].values()))
            while queue and len(pending) < limit:
                chunk = queue.pop()
                items = chunk.items()
                with warnings.catch_warnings():
                    # Bytes sent from the client travel inside the task on
                    # purpose: scattered data would die with its worker, and
                    # the chunk could then not be re-run on another one.
                    warnings.filterwarnings("ignore", message="Large object of size")
                    future = client.submit(_encode_chunk, model_bytes, model, settings, expected, topic,
                                           chunk.number, items, chunk.names, on_error, pure=False,
                                           key=f"perception-retrieval-encode-{chunk.number}-{uuid.uuid4().hex[:12]}",
                                           resources=resources)
                pending[future] = chunk
                progress.started(chunk.number)
            try:
                finished, _ = wait(list(pending), timeout=0.5, return_when="FIRST_COMPLETED")
            except (TimeoutError, asyncio.TimeoutError):
                finished = ()
            except (CancelledError, asyncio.CancelledError):
                finished = [future for future in pending if future.done()]  # reported just below
            for future in finished:
                chunk = pending.pop(future)
                if future.status == "error":
                    _raise_chunk_error(future, chunk)
                if future.status != "finished":
                    raise ClusterError(
                        f"lost the Dask cluster at {address} while encoding (client {client.status}, chunk "
                        f"{chunk.number} {future.status}); chunks that finished are in the embedding cache, so a "
                        "re-run resumes from them") from None
                on_result(chunk, future.result())
                progress.finish(chunk.number, len(chunk.positions))
                report()
                if on_chunk_finished:
                    on_chunk_finished()
            report()
    finally:
        # Nothing here may wait for a scheduler that is gone (each call would
        # block for the connect timeout and hide the error being raised).
        if client.status == "running":
            with contextlib.suppress(Exception):
                client.cancel(list(pending))
            with contextlib.suppress(Exception):
                client.unsubscribe_topic(topic)
        if model_bytes is not None:
            with contextlib.suppress(Exception):
                model_bytes.release()


def _raise_chunk_error(future, chunk: _Chunk) -> None:
    error = future.exception()
    try:
        from distributed.scheduler import KilledWorker
    except ImportError:  # pragma: no cover
        KilledWorker = ()  # noqa: N806
    if isinstance(error, KilledWorker):
        allowed = dask.config.get("distributed.scheduler.allowed-failures", 3)
        shown = ", ".join(chunk.names[:3]) + (", ..." if len(chunk.names) > 3 else "")
        raise ClusterError(
            f"chunk {chunk.number} ({len(chunk.names)} images: {shown}) was running on a worker each of the "
            f"{allowed + 1} times one died; an image in it may crash the decoder or exhaust the worker's memory. "
            "Encode those images alone to find it, or leave them out") from None
    raise error


def balanced_chunk_size(count: int, chunk_size: int, batch_size: int, task_threads: int) -> int:
    """The chunk size used for `count` images: chunk_size, or smaller when that
    would leave task threads idle (fewer than two chunks per thread), but
    always a multiple of batch_size, so that every batch, and so every
    embedding, is the one a single process makes with chunk_size."""
    if chunk_size % batch_size or count >= 2 * task_threads * chunk_size:
        return chunk_size
    wanted = -(-count // max(1, 2 * task_threads))      # ceil
    return min(chunk_size, max(batch_size, -(-wanted // batch_size) * batch_size))


def _task_threads(client: Client) -> int:
    return max(1, sum(int(w.get("nthreads", 1)) for w in _scheduler_info(client).get("workers", {}).values()))


def _model_inputs_check(inputs) -> list:
    if isinstance(inputs, (str, bytes, bytearray, memoryview, os.PathLike, set, frozenset, dict)) or (
            isinstance(inputs, np.ndarray) and inputs.ndim != 4) or not hasattr(inputs, "__iter__"):
        raise TypeError("inputs must be a list of images (paths, bytes or H x W x 3 uint8 arrays) or an "
                        "N x H x W x 3 uint8 array; wrap a single path, bytes or image in a list "
                        f"(got {type(inputs).__name__})")
    return list(inputs)


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _settings(device: str, dtype, batch_size: int, threads: int, decode_threads: int,
              tune_allocator: bool = False) -> dict:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise errors.InvalidArgumentError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    for name, value in (("threads", threads), ("decode_threads", decode_threads)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise errors.InvalidArgumentError(f"{name} must be an integer >= 0 (0 = the worker's share of its host's cores), "
                             f"got {value!r}")
    return {"device": device, "dtype": dtype, "batch_size": batch_size, "threads": threads,
            "decode_threads": decode_threads, "tune_allocator": bool(tune_allocator)}


def encode(client: Client, model_path, inputs, batch_size: int = 16, on_error: str = "raise", *,
           device: str = "cpu", dtype="float32", threads: int = 0, decode_threads: int = 0,
           tune_allocator: bool = False, chunk_size: int = 256, send_model: bool = False, send_images: bool = False,
           resources: Optional[Dict[str, float]] = None, progress: Optional[Callable[[int, int], None]] = None):
    """Embeds images on the cluster, one row per input, in input order.

    Returns what Encoder.encode returns: an N x D float32 array, or with
    on_error="skip" an EncodeResult (embeddings, rows, failures): the embeddings
    of the inputs that worked, rows[i] = the input index of embeddings row i
    (int64), and failures = [(input index, reason), ...] in input order, each once.

    chunk_size:  images per task (up to: fewer when there would be less than two
                 chunks per task thread; see balanced_chunk_size).
    inputs:      paths, encoded bytes or H x W x 3 uint8 arrays. Paths are read
                 by the workers (shared storage) unless send_images, when the
                 client reads them and sends the bytes.
    send_model:  send the model file's bytes instead of having each worker open
                 model_path (which must then be the same file on every worker;
                 each worker checks its sha256).
    device:      cpu, cuda, cuda:N, or "worker": each worker's own device from its
                 Dask resources (see worker_device).
    threads:     LibTorch threads per worker process; 0 = its host's CPUs divided
                 by the worker processes on that host.
    tune_allocator: the Encoder's option, in each worker process (see Encoder).
    resources:   Dask resources each chunk needs, e.g. {"GPU": 1} to encode on the
                 workers started with --resources GPU=1 only.
    progress:    progress(done, total) about twice a second; by default a bar on
                 a terminal.
    """
    if on_error not in ("raise", "skip"):
        raise errors.InvalidArgumentError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise errors.InvalidArgumentError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    settings = _settings(device, dtype, batch_size, threads, decode_threads, tune_allocator)
    inputs = _model_inputs_check(inputs)
    model_path = os.path.abspath(os.fspath(model_path))
    if not os.path.isfile(model_path):
        raise errors.FileNotFoundError(f"model file {model_path} not found; make one with perception-retrieval-export")
    model_sha256 = embedding_cache.file_sha256(model_path)
    names = []
    for i, item in enumerate(inputs):
        if isinstance(item, (str, os.PathLike)):
            names.append(os.path.abspath(os.fspath(item)))
        else:
            names.append(f"input {i}")

    def source(i: int):
        item = inputs[i]
        if isinstance(item, (str, os.PathLike)):
            return (_read_bytes(names[i]) if send_images else names[i]), None
        return item, None

    chunks = [_Chunk(number, list(range(begin, end)), names[begin:end],
                     (lambda begin=begin, end=end: [source(i) for i in range(begin, end)]))
              for number, (begin, end) in enumerate(embedding_cache.chunks(
                  len(inputs), balanced_chunk_size(len(inputs), chunk_size, batch_size, _task_threads(client))))]
    total = len(inputs)
    if progress is None:
        import sys

        from .evaluation import EncodingProgress

        bar = EncodingProgress("images", total, 0, log=lambda _: None) if sys.stderr.isatty() else None
        progress = (lambda done, _total: bar.update(done)) if bar else (lambda done, _total: None)
    embeddings: Optional[np.ndarray] = None
    done_mask = np.zeros(total, dtype=bool)
    failures: List[Tuple[int, str]] = []

    def on_result(chunk: _Chunk, result: dict) -> None:
        nonlocal embeddings
        if embeddings is None:
            embeddings = np.zeros((total, result["dim"]), dtype=np.float32)
        rows = [chunk.positions[r] for r in result["rows"]]
        embeddings[rows] = result["embeddings"]
        done_mask[rows] = True
        failures.extend((chunk.positions[i], reason) for i, reason in result["failures"])

    _run_chunks(client, model_path, model_sha256, settings, chunks, on_error, on_result,
                lambda done: progress(done, total), send_model=send_model, resources=resources)
    if embeddings is None:
        embeddings = np.zeros((total, 0), dtype=np.float32)
    if on_error == "raise":
        return embeddings
    from .encoder import EncodeResult

    rows = np.flatnonzero(done_mask).astype(np.int64)
    return EncodeResult(np.ascontiguousarray(embeddings[rows]), rows, sorted(failures))


def embed(run, images, label: str = "images"):
    """Evaluation.embed on run.client: the same keys, cache, de-duplication,
    chunks and result form, with the chunks encoded by the workers.
    (Evaluation.embed calls this when it has a client.)"""
    from .evaluation import EncodingProgress

    client = run.client
    # Keys, lookup and de-duplication are Evaluation.embed's: the same todo
    # list cut into the same chunks gives the same batches.
    plan = run.plan_embedding(images)
    keys, embeddings, found, todo = plan.keys, plan.embeddings, plan.found, plan.todo
    failures: Dict[int, str] = {}
    if todo:
        run.log(f"{label}: encoding {len(todo)} images on {describe(client)}")
    progress = EncodingProgress(label, len(todo), int(found.sum()), run.log)
    encode_started = time.perf_counter()
    if run.cache is not None and found.any():
        run.log(f"{label}: {int(found.sum())} of {len(images)} embeddings found in the cache ({run.cache.folder})")
    send_images = getattr(run, "send_images", False)

    def items(indices):
        refs = [images[i] for i in indices]
        return [((_read_bytes(ref.path) if send_images else ref.path), ref.crop) for ref in refs]

    chunks = [_Chunk(number, todo[begin:end], [str(images[i]) for i in todo[begin:end]],
                     (lambda indices=todo[begin:end]: items(indices)))
              for number, (begin, end) in enumerate(embedding_cache.chunks(
                  len(todo), balanced_chunk_size(len(todo), run.chunk_size, run.batch_size, _task_threads(client))))]
    workers_used = set()

    def on_result(chunk: _Chunk, result: dict) -> None:
        for i, reason in result["failures"]:
            failures[chunk.positions[i]] = reason
        done = [chunk.positions[r] for r in result["rows"]]
        embeddings[done] = result["embeddings"]
        if run.cache is not None:
            run.cache.store([keys[i] for i in done], result["embeddings"])
        workers_used.add(result["worker"])

    settings = _settings(run.device, run.dtype, run.batch_size, run.threads, run.decode_threads,
                         getattr(run, "tune_allocator", False))
    _run_chunks(client, run.model_path, run.model_sha256, settings, chunks, run.on_error, on_result,
                progress.update, send_model=getattr(run, "send_model", False),
                on_chunk_finished=progress.chunk_finished)
    return plan.finish(failures, encode_started, cluster_workers=len(workers_used))


# ---------------------------------------------------------------------------
# Sharded exact search


def _few_query_limit(dim: int) -> int:
    """Retriever.search's path choice (include/pe/retriever.hpp, run_search):
    at most this many queries are scored by the streaming path, more by the
    blocked GEMM. The two sum a dot product in different orders, so a score's
    last bit depends on the path; test_distributed checks this copy against
    the C++ boundary."""
    k_few_queries, k_few_query_bytes = 48, 256 << 10
    return min(k_few_queries, max(4, k_few_query_bytes // (dim * 4)))


def _query_blocks(count: int, dim: int, block: int) -> List[Tuple[int, int]]:
    """Query blocks that each take the path one Retriever takes for all
    `count` queries: up to the few-query limit, one block (the same call);
    above it, blocks that are all above the limit too (a short last block is
    joined to the one before). Inside one path, a score does not depend on
    the other queries of its call, nor on threads or gallery slicing."""
    limit = _few_query_limit(dim)
    if count <= limit:
        return [(0, count)] if count else []
    block = max(block, limit + 1)
    bounds = list(range(0, count, block)) + [count]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] <= limit:
        del bounds[-2]
    return list(zip(bounds[:-1], bounds[1:]))


class _Piece:
    """A contiguous run of gallery rows held by a worker: a Retriever with the
    user's ids, its first global row, and its ids as an array."""

    def __init__(self, retriever: Retriever, first_row: int):
        self.retriever = retriever
        self.first_row = first_row
        self.ids = retriever.ids()
        self.absent_id = _absent_id(self.ids)

    def __reduce__(self):  # moved or spilled by Dask: the index bytes carry everything
        return (_Piece, (self.retriever, self.first_row))

    def __sizeof__(self) -> int:
        # What Dask's sizeof() reports, and so what its scheduler weighs when it
        # places a search: the real size keeps each search beside its piece
        # (with object's default, ~50 bytes, it would move the piece instead).
        itemsize = 2 if self.retriever.dtype == "float16" else 4
        return len(self.ids) * (self.retriever.dim * itemsize + 2 * 8) + 256


def _absent_id(ids: np.ndarray) -> int:
    """An int64 that is not among ids (an exclude_ids entry that excludes nothing)."""
    if len(ids) == 0:
        return 0
    low = int(ids.min())
    if low > np.iinfo(np.int64).min:
        return low - 1
    ordered = np.unique(ids)
    gaps = np.flatnonzero(np.diff(ordered) > 1)
    if len(gaps):
        return int(ordered[gaps[0]]) + 1
    return int(ordered[-1]) + 1


def _build_piece(vectors: np.ndarray, ids: np.ndarray, first_row: int, dim: int, metric: str, dtype: str) -> _Piece:
    retriever = Retriever(dim, metric=metric, dtype=dtype)
    retriever.reserve(len(ids))
    retriever.add(_native(vectors), _native(ids))
    return _Piece(retriever, first_row)


def _load_piece(path: str, first_row: int, mmap: bool, rows: int, dim: int, metric: str, dtype: str,
                dask_worker=None) -> _Piece:
    where = _where(get_worker())
    try:
        retriever = Retriever.load(path, mmap=mmap)
    except errors.Error as error:
        raise type(error)(f"{where} cannot load the index shard {path}: {error}; the shard folder must be on "
                          "storage every worker mounts at the same path") from None
    seen = (len(retriever), retriever.dim, retriever.metric, retriever.dtype)
    if seen != (rows, dim, metric, dtype):
        raise errors.CorruptFileError(f"{where}: the index shard {path} holds {seen[0]} rows of dim {seen[1]} ({seen[2]}, "
                         f"{seen[3]}) but the manifest says {rows} rows of dim {dim} ({metric}, {dtype}); the "
                         "folder was changed after it was saved")
    return _Piece(retriever, first_row)


def _save_piece(piece: _Piece, path: str) -> str:
    where = _where(get_worker())
    try:
        piece.retriever.save(path)
    except errors.Error as error:
        raise type(error)(f"{where} cannot write the index shard {path}: {error}; save to storage every worker "
                          "and the client mount at the same path") from None
    return path


def _piece_holds(piece: _Piece, ids: np.ndarray) -> Optional[int]:
    hits = np.flatnonzero(np.isin(ids, piece.ids))
    return int(hits[0]) if len(hits) else None


def _resolve_simd(requested: str) -> str:
    return Retriever.simd(requested)


def _search_piece(piece: _Piece, queries: np.ndarray, k: int, self_start: Optional[int],
                  exclude_ids: Optional[np.ndarray], allowed_ids: Optional[np.ndarray], threads: int, simd: str,
                  host_workers: Dict[str, int]) -> Tuple[np.ndarray, np.ndarray]:
    """One piece's top k for one query block. self_start: the global index of
    the block's first query when each query skips the gallery row of its own
    index (exclude_self); that row is skipped through its id, if this piece
    holds it, which Retriever treats exactly as exclude_self."""
    queries, exclude_ids, allowed_ids = _native(queries), _native(exclude_ids), _native(allowed_ids)
    if self_start is not None:
        local = np.arange(self_start, self_start + len(queries), dtype=np.int64) - piece.first_row
        inside = (local >= 0) & (local < len(piece.ids))
        exclude_ids = np.full(len(queries), piece.absent_id, dtype=np.int64)
        exclude_ids[inside] = piece.ids[local[inside]]
    if threads == 0:
        threads = _default_threads(get_worker(), host_workers)
    return piece.retriever.search(queries, k, exclude_ids=exclude_ids, allowed_ids=allowed_ids, threads=threads,
                                  simd=simd)


def merge_top_k(parts: Sequence[Tuple[np.ndarray, np.ndarray]], k: int) -> Tuple[np.ndarray, np.ndarray]:
    """The global top k from per-piece top k's given in global row order.

    Each part is (scores Q x k_i, ids Q x k_i) ranked by score, then row, and
    padded with (-inf, -1). A stable sort on the score keeps equal scores in
    (piece, row-in-piece) order, which for contiguous pieces is the global row
    order: Retriever's tie rule. Scores are copied, never recomputed."""
    scores = np.concatenate([part[0] for part in parts], axis=1)
    ids = np.concatenate([part[1] for part in parts], axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    scores = np.take_along_axis(scores, order, axis=1)
    ids = np.take_along_axis(ids, order, axis=1)
    if scores.shape[1] < k:  # cannot happen with pieces asked for k each; kept for safety
        pad = k - scores.shape[1]
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
    return np.ascontiguousarray(scores, dtype=np.float32), np.ascontiguousarray(ids, dtype=np.int64)


def _require(array, dtype, ndim: int, argument: str) -> np.ndarray:
    """Retriever's argument conversion (pe::python::convert_array), with its
    messages: any real-valued array-like becomes a C-contiguous array of
    `dtype` (no copy when it already is one); booleans, complex numbers,
    strings and objects are refused, ids must be integers."""
    integer = np.issubdtype(dtype, np.integer)
    if isinstance(array, np.ndarray) and array.dtype == dtype and array.ndim == ndim and array.flags.c_contiguous:
        return array
    try:
        converted = np.asarray(array)
    except Exception as error:  # noqa: BLE001 - any failure to make an array is the caller's type
        kind = type(array).__name__
        raise TypeError(f"{argument} must be an array of numbers, got {kind}" +
                        (f"; move it to the CPU first: {argument}.cpu()" if kind == "Tensor" else f" ({error})")
                        ) from None
    accepted = "iu" if integer else "fiu"
    if converted.dtype.kind not in accepted:
        raise TypeError(f"{argument} must hold {'integers' if integer else 'real numbers'}, got dtype "
                        f"{converted.dtype}" + ("; convert ids with .astype(np.int64) if they are whole numbers"
                                                if integer and converted.dtype.kind == "f" else ""))
    if converted.ndim != ndim:
        if ndim == 2 and converted.ndim == 1:
            raise errors.InvalidArgumentError(
                f"{argument} must be 2-D (rows, dim), got 1-D with shape ({converted.shape[0]},); for a single "
                f"vector pass {argument}[None, :]")
        raise errors.InvalidArgumentError(f"{argument} must be {ndim}-D, got {converted.ndim}-D with shape "
                                          f"{tuple(converted.shape)}")
    if integer and converted.dtype.kind == "u" and converted.dtype.itemsize == 8 and converted.size:
        largest = int(converted.max())
        if largest > np.iinfo(np.int64).max:
            raise errors.InvalidArgumentError(f"{argument} holds {largest}, past the largest int64; ids must fit "
                                              "int64")
    return np.ascontiguousarray(converted, dtype=dtype)


def _check_rows(values: np.ndarray, argument: str, cosine: bool) -> None:
    """NaN/Inf and (under cosine) zero rows, named by their global row."""
    finite = np.isfinite(values)
    if not finite.all():
        r, c = map(int, np.argwhere(~finite)[0])
        kind = "NaN" if np.isnan(values[r, c]) else "Inf"
        raise errors.InvalidArgumentError(f"{argument}[{r}, {c}] is {kind}; check the embeddings (e.g. np.isfinite(x).all()) before "
                         "adding/searching")
    if cosine and len(values):
        zero = np.flatnonzero(~values.any(axis=1))
        if len(zero):
            raise errors.InvalidArgumentError(f"{argument} row {int(zero[0])} is all zeros; cosine similarity is undefined for it. "
                             "Drop it, or use metric \"ip\"")


@dataclass
class _PieceRef:
    future: object
    first_row: int
    rows: int


class ShardedRetriever:
    """Retriever's exact top-k search over a gallery split into row shards held
    by Dask workers.

    ShardedRetriever(client, dim, metric="cosine", shards=None, dtype="float32")
      shards:      pieces each add() splits its rows into (None = one per worker)
      simd:        kernel level, as Retriever.search; "best" uses the best level
                   every worker has, so that all pieces score alike
      query_block: queries sent to the pieces at a time

    add(embeddings, ids) and search(queries, k, exclude_self=False,
    exclude_ids=None, allowed_ids=None, threads=0) -> (scores, ids) take and
    return what Retriever's do, and search returns bitwise what one Retriever
    holding the same rows (added in the same order) returns, ties included:
    higher score first, then lower row. threads: per piece; 0 = the worker's
    share of its host's cores.

    Pieces built by add() live in worker memory; a worker that dies takes its
    pieces with it (searches then raise ClusterError; add again). Pieces read
    by load() from index files on shared storage are read again by another
    worker if theirs dies.
    """

    MANIFEST = "sharded.json"

    def __init__(self, client: Client, dim: int, metric: str = "cosine", shards: Optional[int] = None, *,
                 dtype: str = "float32", simd: str = "best", query_block: int = 1024):
        local = Retriever(dim, metric=metric, dtype=dtype)  # Retriever's own argument checks
        if shards is not None and (isinstance(shards, bool) or not isinstance(shards, int) or shards < 1):
            raise errors.InvalidArgumentError(f"shards must be None (one per worker) or an integer >= 1, got {shards!r}")
        if isinstance(query_block, bool) or not isinstance(query_block, int) or query_block < 1:
            raise errors.InvalidArgumentError(f"query_block must be an integer >= 1, got {query_block!r}")
        Retriever.simd(simd)  # an unknown level is refused here, not on a worker
        self.client = client
        self.dim, self.metric, self.dtype = local.dim, local.metric, local.dtype
        self.shards, self.simd, self.query_block = shards, simd, query_block
        self._pieces: List[_PieceRef] = []
        self._size = 0
        self._next_worker = 0
        self._simd_for: Tuple[frozenset, str] = (frozenset(), simd)   # (workers asked, their common level)

    def __len__(self) -> int:
        return self._size

    @property
    def num_pieces(self) -> int:
        return len(self._pieces)

    def __repr__(self) -> str:
        return (f"ShardedRetriever(dim={self.dim}, metric={self.metric!r}, dtype={self.dtype!r}, size={self._size}, "
                f"pieces={len(self._pieces)})")

    def _workers(self) -> List[str]:
        workers = sorted(_scheduler_info(self.client).get("workers", {}))
        if not workers:
            raise ClusterError(f"the Dask cluster at {self.client.scheduler.address} has no workers to hold the "
                               "gallery; start some with: python -m dask worker " + str(self.client.scheduler.address))
        return workers

    def add(self, embeddings: np.ndarray, ids: np.ndarray) -> None:
        """Appends rows (float32 (n, dim) C-contiguous, int64 (n,) unique ids),
        split into `shards` contiguous pieces placed on the workers. Raises
        ValueError/TypeError like Retriever.add, and then adds nothing."""
        vectors = _require(embeddings, np.float32, 2, "vectors")
        ids = _require(ids, np.int64, 1, "ids")
        if vectors.shape[1] != self.dim:
            raise errors.InvalidArgumentError(f"vectors has {vectors.shape[1]} columns but the retriever's dim is {self.dim}; embed "
                             "with the same model the gallery was built with")
        if len(ids) != len(vectors):
            raise errors.InvalidArgumentError(f"ids has {len(ids)} entries for {len(vectors)} vectors; pass one id per row")
        count = len(ids)
        if count == 0:
            return
        _check_rows(vectors, "vectors", self.metric == "cosine")
        if self.dtype == "float16" and self.metric != "cosine":
            big = np.argwhere(np.abs(vectors) > 65504.0)
            if len(big):
                r, c = map(int, big[0])
                raise errors.InvalidArgumentError(f"vectors[{r}, {c}] = {vectors[r, c]} does not fit float16 storage (|x| <= 65504); "
                                 "scale the vectors or use dtype float32")
        ordered = np.sort(ids)
        repeated = np.flatnonzero(ordered[1:] == ordered[:-1])
        if len(repeated):
            raise errors.InvalidArgumentError(f"ids lists id {int(ordered[repeated[0]])} more than once; ids must be unique")
        client = self.client
        workers = self._workers()
        if self._pieces:
            [ids_future] = client.scatter([ids], hash=False)
            holds = [client.submit(_piece_holds, piece.future, ids_future, pure=False) for piece in self._pieces]
            for found in self._gather(holds):
                if found is not None:
                    raise errors.InvalidArgumentError(f"add: id {int(ids[found])} (ids[{found}]) is already in the gallery; ids must "
                                     "be unique")
        pieces = min(self.shards or len(workers), count)
        bounds = [count * j // pieces for j in range(pieces + 1)]
        built = []
        for j in range(pieces):
            begin, end = bounds[j], bounds[j + 1]
            worker = workers[(self._next_worker + j) % len(workers)]
            vector_future, id_future = client.scatter([vectors[begin:end], ids[begin:end]], workers=[worker],
                                                      hash=False)
            future = client.submit(_build_piece, vector_future, id_future, self._size + begin, self.dim, self.metric,
                                   self.dtype, workers=[worker], allow_other_workers=True, pure=False,
                                   key=f"perception-retrieval-piece-{uuid.uuid4().hex[:16]}")
            built.append((future, self._size + begin, end - begin))
        self._gather([future for future, _, _ in built])  # raises, and nothing is added, if a piece failed
        self._pieces.extend(_PieceRef(future, first, rows) for future, first, rows in built)
        self._size += count
        self._next_worker = (self._next_worker + pieces) % len(workers)

    def _ship(self, array: Optional[np.ndarray]):
        """Small arrays travel inside the tasks (no extra round trip: a Q = 1
        search is one submit and one gather); large ones are scattered once
        and shared by the tasks of every piece."""
        if array is None or array.nbytes <= _INLINE_BYTES:
            return array
        [future] = self.client.scatter([array], hash=False)
        return future

    def _check_pieces(self) -> None:
        if any(piece.future.status == "cancelled" for piece in self._pieces):
            self._lost()

    def _lost(self):
        raise ClusterError(
            f"a gallery shard was lost (its worker died or the cluster at {self.client.scheduler.address} went "
            "away); shards built by add() live in worker memory: add the gallery again, or save() it to shared "
            "storage and load() it, so that another worker can read a lost shard again") from None

    def _gather(self, futures: list) -> list:
        try:
            return self.client.gather(futures)
        except (CancelledError, asyncio.CancelledError):
            self._lost()

    def _common_simd(self) -> str:
        workers = frozenset(_scheduler_info(self.client).get("workers", {}))
        if self._simd_for[0] != workers:
            levels = {level for level in self.client.run(_resolve_simd, self.simd, on_error="return").values()
                      if isinstance(level, str)}  # a worker that just died answers with an error
            # Different levels sum in different orders: every piece must use one.
            common = min(levels, key=_SIMD_ORDER.index) if levels else self.simd
            self._simd_for = (workers, common)
        return self._simd_for[1]

    def search(self, queries: np.ndarray, k: int, exclude_self: bool = False, exclude_ids: Optional[np.ndarray] = None,
               allowed_ids: Optional[np.ndarray] = None, threads: int = 0) -> Tuple[np.ndarray, np.ndarray]:
        """Exact top-k: (scores float32 (Q, k), ids int64 (Q, k)), best first,
        ties by row, padded with -inf / -1. exclude_self: query i skips gallery
        row i (Q == len). exclude_ids: int64 (Q,), query i skips that id.
        allowed_ids: int64, only these ids are returned."""
        queries = _require(queries, np.float32, 2, "queries")
        if queries.shape[1] != self.dim:
            raise errors.InvalidArgumentError(f"queries has {queries.shape[1]} columns but the retriever's dim is {self.dim}; embed "
                             "with the same model the gallery was built with")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
            raise errors.InvalidArgumentError(f"k must be >= 1, got {k}; ask for at least one result per query (k larger than the "
                             "gallery is fine)")
        k = int(k)
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
            raise errors.InvalidArgumentError(f"threads must be >= 0 (0 = every core), got {threads!r}")
        count = len(queries)
        if exclude_self and exclude_ids is not None:
            raise errors.InvalidArgumentError("search: pass exclude_self or exclude_ids, not both")
        if exclude_self and count != self._size:
            raise errors.InvalidArgumentError(f"exclude_self needs the queries to be the gallery, row for row: got {count} queries for "
                             f"a gallery of {self._size}; use exclude_ids to skip a given id per query")
        if exclude_ids is not None:
            exclude_ids = _require(exclude_ids, np.int64, 1, "exclude_ids")
            if len(exclude_ids) != count:
                raise errors.InvalidArgumentError(f"exclude_ids has {len(exclude_ids)} entries for {count} queries; pass one id per "
                                 "query")
        if allowed_ids is not None:
            allowed_ids = _require(allowed_ids, np.int64, 1, "allowed_ids")
        _check_rows(queries, "queries", self.metric == "cosine")
        scores = np.full((count, k), -np.inf, dtype=np.float32)
        found = np.full((count, k), -1, dtype=np.int64)
        if count == 0 or not self._pieces:
            return scores, found
        client = self.client
        self._check_pieces()
        simd = self._common_simd()
        host_workers = _host_workers(client)
        allowed = self._ship(allowed_ids)
        blocks = _query_blocks(count, self.dim, self.query_block)
        in_flight = max(2, len(self._workers()))
        pending: List[Tuple[int, int, list]] = []

        def submit(begin: int, end: int) -> None:
            block = self._ship(queries[begin:end])
            excluded = exclude_ids[begin:end] if exclude_ids is not None else None
            # No placement is asked for: a piece outweighs a query block, so
            # the scheduler runs each search where its piece is.
            parts = [client.submit(_search_piece, piece.future, block, k, begin if exclude_self else None, excluded,
                                   allowed, threads, simd, host_workers, pure=False)
                     for piece in self._pieces]
            pending.append((begin, end, parts))

        queue = list(blocks)
        queue.reverse()
        while queue or pending:
            while queue and len(pending) < in_flight:
                submit(*queue.pop())
            begin, end, parts = pending.pop(0)
            results = self._gather(parts)
            scores[begin:end], found[begin:end] = merge_top_k(results, k)
        return scores, found

    def save(self, folder) -> str:
        """Writes each piece as an index file (Retriever.save, written by the
        worker holding it) and a manifest, sharded.json, into folder, which must
        be on storage the workers and the client share. Returns the manifest path."""
        folder = os.path.abspath(os.fspath(folder))
        os.makedirs(folder, exist_ok=True)
        self._check_pieces()
        names = [f"piece-{i:05d}.pei" for i in range(len(self._pieces))]
        written = [self.client.submit(_save_piece, piece.future, os.path.join(folder, name), pure=False)
                   for piece, name in zip(self._pieces, names)]
        self._gather(written)
        manifest = {"format": "perception_retrieval.sharded", "version": 1, "dim": self.dim, "metric": self.metric,
                    "dtype": self.dtype, "size": self._size,
                    "pieces": [{"file": name, "first_row": piece.first_row, "rows": piece.rows}
                               for name, piece in zip(names, self._pieces)]}
        path = os.path.join(folder, self.MANIFEST)
        handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=folder)
        with os.fdopen(handle, "w") as out:
            json.dump(manifest, out, indent=1)
        os.replace(temporary, path)
        return path

    @classmethod
    def load(cls, client: Client, folder, mmap: bool = True, *, simd: str = "best",
             query_block: int = 1024) -> "ShardedRetriever":
        """The pieces saved in folder, read by the workers (memory-mapped with
        mmap=True: pages load on first use, from the shared storage)."""
        folder = os.path.abspath(os.fspath(folder))
        path = os.path.join(folder, cls.MANIFEST)
        try:
            with open(path) as handle:
                manifest = json.load(handle)
        except OSError as error:
            raise _file_error(error, f"{path}: {error.strerror or error}; pass a folder written by "
                                     "ShardedRetriever.save") from None
        except ValueError as error:
            raise errors.CorruptFileError(f"{path} is not a ShardedRetriever manifest ({error})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != "perception_retrieval.sharded":
            raise errors.CorruptFileError(f"{path} is not a ShardedRetriever manifest")
        sharded = cls(client, manifest["dim"], manifest["metric"], dtype=manifest["dtype"], simd=simd,
                      query_block=query_block)
        workers = sharded._workers()
        expected_row = 0
        refs = []
        for j, entry in enumerate(manifest["pieces"]):
            if entry["first_row"] != expected_row:
                raise errors.CorruptFileError(f"{path}: piece {j} starts at row {entry['first_row']}, expected {expected_row}")
            worker = workers[j % len(workers)]
            future = client.submit(_load_piece, os.path.join(folder, entry["file"]), entry["first_row"], mmap,
                                   entry["rows"], sharded.dim, sharded.metric, sharded.dtype, workers=[worker],
                                   allow_other_workers=True, pure=False,
                                   key=f"perception-retrieval-piece-{uuid.uuid4().hex[:16]}")
            refs.append(_PieceRef(future, entry["first_row"], entry["rows"]))
            expected_row += entry["rows"]
        sharded._gather([ref.future for ref in refs])
        sharded._pieces = refs
        sharded._size = expected_row
        return sharded

    def close(self) -> None:
        """Releases the pieces on the workers."""
        for piece in self._pieces:
            piece.future.release()
        self._pieces, self._size = [], 0


def rank(client: Client, dataset, embeddings: np.ndarray, depth: int, threads: int = 0):
    """evaluation.rank on the cluster: the same (scores, ranking), bitwise.
    The client holds every embedding, so a shard lost with its worker is
    rebuilt from them once before giving up."""
    from .evaluation import search_gallery  # evaluation imports this module lazily

    for attempt in (1, 2):
        gallery = ShardedRetriever(client, embeddings.shape[1])
        try:
            return search_gallery(gallery, dataset, embeddings, depth, threads)
        except ClusterError:
            if attempt == 2:
                raise
        finally:
            gallery.close()
    raise AssertionError("unreachable")  # pragma: no cover
