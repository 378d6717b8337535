"""Known-item search as a search box meets it: a document's title typed exactly, with typos, half-typed.

For every Cranfield and CACM document whose title has at least 4 words, its first 5 title words
(runs of letters and digits) are searched on the lexical store alone (no vectors, no rerank):

- exact:  as typed;
- typo:   one deterministic-random edit (swap, deletion, insertion or substitution, never on the
          first letter) in each word of 5 letters or more;
- prefix: the first 3 words and the first half of the 4th, sent as unfinished (prefix mode);
- four:   (a reference, no target) the first 4 words whole: what the prefix query could at best find,
          since it carries less of the title than `exact` does.

Each is searched twice, "before" (exact matching only, what the stores did before typo tolerance) and
"after" (typo tolerance on, as by default, and prefix mode on for the half-typed query), interleaved
query by query so load drifts alike. Printed per store and collection: success@10 and MRR@10 of the
document, the ratios typo/exact and prefix/exact (targets >= 0.9 each), and the p50 of the store's
search call before and after (target: after within +10 ms), with the machine's load.

    .venv/bin/python bench/known_item.py --data-dir /tmp/bench-known                       # Tantivy
    .venv/bin/python bench/known_item.py --data-dir /tmp/bench-known --es-url http://127.0.0.1:9250
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import statistics
import string
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _stats import load
from search import DATASETS, SHARED, overrides, settings_for

REPO = Path(__file__).resolve().parent.parent
WORD = re.compile(r"\w+")
TITLE_WORDS = 5
DEPTH = 100  # passages asked for; documents ranked by their best passage
TARGET_RATIO = 0.9
TARGET_EXTRA_MS = 10.0
VARIANTS = ("exact", "typo", "prefix", "four")


@dataclass(frozen=True, slots=True)
class KnownItem:
    doc_id: str
    exact: str
    typo: str
    prefix: str
    four: str


def with_typo(word: str, rng: random.Random) -> str:
    """One edit, never on the first letter: a swap of neighbours, a deletion, an insertion or a
    substitution, chosen and placed by `rng`."""
    while True:
        kind = rng.choice(("swap", "delete", "insert", "substitute"))
        i = rng.randrange(1, len(word))
        if kind == "swap" and i + 1 < len(word):
            typed = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
        elif kind == "delete":
            typed = word[:i] + word[i + 1 :]
        elif kind == "insert":
            typed = word[:i] + rng.choice(string.ascii_lowercase) + word[i:]
        else:
            typed = word[:i] + rng.choice(string.ascii_lowercase) + word[i + 1 :]
        if typed.lower() != word.lower():
            return typed


def known_items(collection: str) -> list[KnownItem]:
    """Titles of at least 4 words, each with its three queries; typos seeded by collection and id."""
    items = []
    with (SHARED / "data" / collection / "corpus.jsonl").open(encoding="utf-8") as corpus:
        for line in corpus:
            if not line.strip():
                continue
            record = json.loads(line)
            words = WORD.findall(record.get("title") or "")[:TITLE_WORDS]
            if len(words) < 4:
                continue
            rng = random.Random(f"{collection}/{record['_id']}")
            typos = [with_typo(w, rng) if len(w) >= 5 else w for w in words]
            fourth = words[3]
            half = [*words[:3], fourth[: (len(fourth) + 1) // 2]]
            items.append(
                KnownItem(
                    str(record["_id"]), " ".join(words), " ".join(typos), " ".join(half), " ".join(words[:4])
                )
            )
    return items


def corpus_chunks(stack: Any, collection: str) -> list[Any]:
    """The collection's documents in ../shared/data, chunked as `fathom index` chunks them."""
    from indexers.sources import beir_corpus, read_jsonl
    from service.ingest.chunking import Chunker, ChunkingPolicy
    from service.ingest.documents import Document

    chunker = Chunker(stack.embedder.tokenizer, ChunkingPolicy())
    documents = [r for r in read_jsonl(beir_corpus(SHARED / "data" / collection)) if isinstance(r, Document)]
    return [chunk for document in documents for chunk in chunker.chunks(document)]


async def holds(store: Any, collection: str, chunks: int) -> bool:
    """The store already has the collection, whole."""
    return bool(await store.collection_exists(collection)) and await store.count_chunks(collection) == chunks


async def index_lexical(settings: Any, collection: str) -> None:
    """The lexical store only, chunked as `fathom index` chunks: no vectors are needed here."""
    from service.backends.stack import open_stack

    async with open_stack(settings) as stack:
        chunks = corpus_chunks(stack, collection)
        if not await holds(stack.lexical, collection, len(chunks)):
            await stack.lexical.drop_collection(collection)
            await stack.lexical.ensure_collection(collection)
            await stack.lexical.upsert(collection, chunks)


def rank_of(doc_id: str, hits: list[Any]) -> int | None:
    """1-based rank of the document among the distinct documents of the hits."""
    seen: list[str] = []
    for hit in hits:
        if hit.doc_id not in seen:
            seen.append(hit.doc_id)
            if hit.doc_id == doc_id:
                return len(seen)
    return None


async def run(settings: Any, collection: str, items: list[KnownItem]) -> dict[str, Any]:
    from service.backends.stack import open_stack
    from service.search.typos import EXACT, Matching

    typos_on = Matching(typos=True)
    modes = {
        "before": {"exact": EXACT, "typo": EXACT, "prefix": EXACT, "four": EXACT},
        "after": {
            "exact": typos_on,
            "typo": typos_on,
            "prefix": Matching(typos=True, prefix=True),
            "four": typos_on,
        },
    }
    ranks: dict[str, dict[str, list[int | None]]] = {m: {v: [] for v in VARIANTS} for m in modes}
    millis: dict[str, list[float]] = {m: [] for m in modes}
    async with open_stack(settings) as stack:
        lexical = stack.lexical
        for item in items[:5]:  # warm-up
            await lexical.search(collection, item.typo, limit=DEPTH, matching=typos_on)
        for n, item in enumerate(items):
            order = list(modes) if n % 2 == 0 else list(modes)[::-1]
            for mode in order:
                for variant in VARIANTS:
                    started = time.perf_counter()
                    hits = await lexical.search(
                        collection, getattr(item, variant), limit=DEPTH, matching=modes[mode][variant]
                    )
                    millis[mode].append((time.perf_counter() - started) * 1000)
                    ranks[mode][variant].append(rank_of(item.doc_id, hits))
    return {"ranks": ranks, "millis": millis}


def scores(ranks: list[int | None]) -> dict[str, float]:
    found = [r for r in ranks if r is not None and r <= 10]
    return {
        "success@10": len(found) / len(ranks),
        "mrr@10": sum(1 / r for r in found) / len(ranks),
    }


def summarise(backend: str, collection: str, items: int, measured: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {"backend": backend, "collection": collection, "items": items}
    for mode in ("before", "after"):
        figures = {variant: scores(measured["ranks"][mode][variant]) for variant in VARIANTS}
        exact = figures["exact"]
        for variant in ("typo", "prefix", "four"):
            figures[f"{variant}/exact"] = {
                metric: (figures[variant][metric] / exact[metric]) if exact[metric] else 0.0
                for metric in exact
            }
        figures["p50_ms"] = {"all": statistics.median(measured["millis"][mode])}
        result[mode] = figures
    result["extra_p50_ms"] = result["after"]["p50_ms"]["all"] - result["before"]["p50_ms"]["all"]
    return result


def report(r: dict[str, Any]) -> None:
    print(
        f"\n{r['backend']} {r['collection']}: {r['items']} titles; load {r['load_start']} -> {r['load_end']}"
    )
    print(f"  {'':<7} {'variant':<14} {'success@10':>10} {'MRR@10':>8}")
    for mode in ("before", "after"):
        for variant in (*VARIANTS, "typo/exact", "prefix/exact", "four/exact"):
            f = r[mode][variant]
            print(f"  {mode:<7} {variant:<14} {f['success@10']:>10.3f} {f['mrr@10']:>8.3f}")
        print(f"  {mode:<7} {'lexical p50':<14} {r[mode]['p50_ms']['all']:>8.2f} ms")
    after = r["after"]
    ratios = [after[v][m] for v in ("typo/exact", "prefix/exact") for m in ("success@10", "mrr@10")]
    verdict = "PASS" if min(ratios) >= TARGET_RATIO else "BELOW"
    print(f"  target: ratios >= {TARGET_RATIO} after -> lowest {min(ratios):.3f}: {verdict}")
    extra = r["extra_p50_ms"]
    print(f"  target: p50 after within +{TARGET_EXTRA_MS:g} ms -> {extra:+.2f} ms: "
          f"{'PASS' if extra <= TARGET_EXTRA_MS else 'ABOVE'}")  # fmt: skip


def measure(backend: str, collection: str, data_dir: Path, es_url: str, sample: int) -> dict[str, Any]:
    env = overrides(data_dir / backend, lexical=backend, es_url=es_url)
    settings = settings_for(env)
    asyncio.run(index_lexical(settings, collection))
    items = known_items(collection)
    if sample:
        items = random.Random(collection).sample(items, min(sample, len(items)))
    load_start = load()
    measured = asyncio.run(run(settings, collection, items))
    return {
        **summarise(backend, collection, len(items), measured),
        "load_start": load_start,
        "load_end": load(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, help="reuse an indexed data dir (default: a new temp dir)")
    parser.add_argument("--es-url", default="", help="also bench Elasticsearch at this URL")
    parser.add_argument("--skip-default", action="store_true", help="leave out Tantivy")
    parser.add_argument("--collections", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--sample", type=int, default=0, help="titles per collection (default: all)")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    data_dir = (args.data_dir or Path(tempfile.mkdtemp(prefix="fathom-bench-known-"))).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    backends = ([] if args.skip_default else ["tantivy"]) + (["elasticsearch"] if args.es_url else [])
    results = [
        measure(backend, collection, data_dir, args.es_url, args.sample)
        for backend in backends
        for collection in args.collections
    ]
    for result in results:
        report(result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
