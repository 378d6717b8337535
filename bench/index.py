"""Indexing throughput and memory: `fathom index` against fastembed alone, in the same run.

Throughput: `fathom index` on CACM (3204 documents, most of them a title and a short abstract), a
subprocess with a fresh data folder, timed from start to exit (model load included). The baseline is
fastembed `TextEmbedding.embed(batch_size=32)` in this process on exactly the chunks the indexer makes
(same model folder, same chunking), with nothing else: the ratio says what chunking, journalling and
writing both stores cost on top of the embedding every indexer must pay for.

Memory: `fathom index` on generated documents of a few words each (short, so embedding 100k of them
takes minutes, not hours), 10k then 100k, peak RSS of each child from os.wait4. Qdrant's local mode
keeps every point in memory by design, so a second child that only upserts the same number of points
(random vectors, same payload shape) into Qdrant local mode measures the store's own growth; streaming
holds when the indexer's growth beyond the store's stays small.

    .venv/bin/python bench/index.py                  # both parts
    .venv/bin/python bench/index.py --skip-memory    # throughput only
    .venv/bin/python bench/index.py --skip-throughput --sizes 2000 20000

Exit status: 0 when the throughput ratio meets --target and memory stays flat, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"
MODEL_DIR = SHARED / "models" / "all-MiniLM-L6-v2"
CACM = SHARED / "data" / "cacm"
FATHOM = str(Path(sys.executable).with_name("fathom"))
# Growth of the indexer beyond the store's own, from 10k to 100k documents, that still counts as flat.
FLAT_MIB = 64.0

QDRANT_ONLY = """
import os, random, resource, sys
from qdrant_client import QdrantClient, models
count, path = int(sys.argv[1]), sys.argv[2]
client = QdrantClient(path=path)
client.create_collection("c", vectors_config=models.VectorParams(size=384, distance=models.Distance.COSINE))
for start in range(0, count, 128):
    points = [
        models.PointStruct(
            id=i, vector=[random.random() for _ in range(384)],
            payload={"chunk_id": f"{i}#0", "doc_id": str(i), "position": 0, "title": "",
                     "text": f"document {i} about topic {i % 97}", "metadata": {}},
        )
        for i in range(start, min(start + 128, count))
    ]
    client.upsert("c", points=points)
client.close()
"""


def write_config(folder: Path, quantize: str = "none") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "fathom.toml"
    config.write_text(f'[embedding]\npath = "{MODEL_DIR}"\nquantize = "{quantize}"\n', encoding="utf-8")
    return config


def run_child(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(seconds, peak RSS in MiB, stdout) of one child process."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.DEVNULL, env=env, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        out.seek(0)
        output = out.read()
    if process.returncode != 0:
        raise SystemExit(f"{command[:3]} failed ({process.returncode}): {output[-500:]}")
    return seconds, usage.ru_maxrss / 1024, output  # ru_maxrss is in KiB on Linux


def fathom_index(
    source: Path, folder: Path, quantize: str = "none", collection: str = "bench"
) -> tuple[float, float, str]:
    env = {**os.environ, "FATHOM_DATA_DIR": str(folder / "data")}
    env.pop("FATHOM_CONFIG", None)
    config = write_config(folder, quantize)
    command = [FATHOM, "--config", str(config), "index", str(source), "--collection", collection]
    return run_child(command, env)


def cacm_chunk_texts() -> list[str]:
    """The texts the indexer embeds for CACM: same reader, same chunker, same title handling."""
    from tokenizers import Tokenizer

    from indexers.sources import beir_corpus, read_jsonl
    from service.ingest.chunking import Chunker, ChunkingPolicy, embedding_text
    from service.ingest.documents import Document

    tokenizer = Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    chunker = Chunker(tokenizer, ChunkingPolicy())
    documents = [r for r in read_jsonl(beir_corpus(CACM)) if isinstance(r, Document)]
    return [embedding_text(chunk) for document in documents for chunk in chunker.chunks(document)]


def fastembed_seconds(texts: list[str]) -> float:
    """Load and embed, as the indexer's time includes loading its model too."""
    from fastembed import TextEmbedding
    from fastembed.common.model_description import ModelSource, PoolingType

    started = time.perf_counter()
    TextEmbedding.add_custom_model(
        "bench/minilm",
        pooling=PoolingType.MEAN,
        normalization=True,
        sources=ModelSource(hf="bench/minilm"),
        dim=384,
        model_file="model.onnx",
    )
    model = TextEmbedding("bench/minilm", specific_model_path=str(MODEL_DIR))
    for _ in model.embed(texts, batch_size=32):
        pass
    return time.perf_counter() - started


def throughput(target: float) -> bool:
    documents = sum(1 for line in (CACM / "corpus.jsonl").open(encoding="utf-8") if line.strip())
    texts = cacm_chunk_texts()
    baseline = fastembed_seconds(texts)
    with tempfile.TemporaryDirectory() as folder:
        seconds, peak, output = fathom_index(CACM, Path(folder))
    ratio = baseline / seconds
    print(f"cacm: {documents} documents, {len(texts)} chunks")
    print(f"  fastembed in-process : {baseline:7.1f} s  {documents / baseline:7.1f} docs/s")
    rate = documents / seconds
    print(f"  fathom index         : {seconds:7.1f} s  {rate:7.1f} docs/s  (peak RSS {peak:.0f} MiB)")
    print(f"  summary              : {output.strip().splitlines()[-1]}")
    print(f"  ratio fathom/fastembed: {ratio:.2f}x (target >= {target:.2f}x)")
    return ratio >= target


def int8_against_fp32(rounds: int, target: float) -> bool:
    """`fathom index` on CACM with the embedder fp32 and int8, alternating; docs/s ratio of the medians.

    The int8 copy is made once per folder before timing (a one-off at first load, cached by hash).
    """
    documents = sum(1 for line in (CACM / "corpus.jsonl").open(encoding="utf-8") if line.strip())
    seconds: dict[str, list[float]] = {"none": [], "int8": []}
    with tempfile.TemporaryDirectory() as folder:
        warm = generated_corpus(Path(folder) / "one.jsonl", 1)
        for quantize in seconds:
            fathom_index(warm, Path(folder) / quantize, quantize, "warm")
        for round_no in range(rounds):
            order = list(seconds.items())
            for quantize, times in order if round_no % 2 == 0 else order[::-1]:  # neither always first
                taken, _, _ = fathom_index(CACM, Path(folder) / quantize, quantize, f"cacm{round_no}")
                times.append(taken)
                print(
                    f"  round {round_no + 1}: {quantize:<4} {taken:6.1f} s  {documents / taken:6.1f} docs/s"
                )
    fp32, int8 = (sorted(times)[len(times) // 2] for times in seconds.values())
    ratio = fp32 / int8
    print(f"embedding int8 against fp32, fathom index on CACM: {ratio:.2f}x docs/s (target >= {target:.2f}x)")
    return ratio >= target


def generated_corpus(path: Path, count: int) -> Path:
    with path.open("w", encoding="utf-8") as out:
        for i in range(count):
            out.write(json.dumps({"_id": str(i), "text": f"document {i} about topic {i % 97}"}) + "\n")
    return path


def peak_memory(count: int) -> tuple[float, float, float]:
    """(seconds, fathom peak MiB, qdrant-only peak MiB) for `count` generated documents."""
    with tempfile.TemporaryDirectory() as folder:
        source = generated_corpus(Path(folder) / "docs.jsonl", count)
        seconds, fathom_peak, _ = fathom_index(source, Path(folder))
        store_command = [sys.executable, "-c", QDRANT_ONLY, str(count), str(Path(folder) / "qdrant-only")]
        _, store_peak, _ = run_child(store_command, dict(os.environ))
    return seconds, fathom_peak, store_peak


def memory(sizes: list[int]) -> bool:
    results = {n: peak_memory(n) for n in sizes}
    for n, (seconds, fathom_peak, store_peak) in results.items():
        print(
            f"memory: {n:>7} docs  {seconds:7.1f} s ({n / seconds:6.1f} docs/s)  peak RSS fathom index "
            f"{fathom_peak:6.0f} MiB, qdrant-local-only {store_peak:6.0f} MiB, "
            f"beyond store {fathom_peak - store_peak:6.0f} MiB"
        )
    small, large = results[sizes[0]], results[sizes[-1]]
    growth = (large[1] - large[2]) - (small[1] - small[2])
    print(
        f"memory: indexer growth beyond the store from {sizes[0]} to {sizes[-1]} docs: {growth:.0f} MiB "
        f"(flat if <= {FLAT_MIB:.0f} MiB)"
    )
    return growth <= FLAT_MIB


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", type=float, default=0.8, help="throughput ratio to meet (default 0.8)")
    parser.add_argument("--sizes", type=int, nargs=2, default=[10_000, 100_000], help="memory check sizes")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument(
        "--int8-rounds", type=int, default=0, help="also time fp32 against int8 embedding, this many rounds"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(REPO_ROOT))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _stats import load

    print(load())
    fast_enough = True if args.skip_throughput else throughput(args.target)
    int8_fast = int8_against_fp32(args.int8_rounds, 1.5) if args.int8_rounds else True
    flat = True if args.skip_memory else memory(args.sizes)
    print(load())
    return 0 if fast_enough and flat and int8_fast else 1


if __name__ == "__main__":
    sys.exit(main())
