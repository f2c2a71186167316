"""Tiny, offline stand-ins for the real model and data, shared by every stage's tests.

A 2-layer BERT (or DistilBERT, RoBERTa, MPNet) with a 32-token vocabulary, built from a config and
a tokenizer made here: it trains in seconds, exports to ONNX in seconds and never touches the network.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

POSITIVE_WORDS = ["great", "wonderful", "superb", "moving", "funny", "brilliant", "charming"]
NEGATIVE_WORDS = ["awful", "boring", "dull", "terrible", "tedious", "clumsy", "bland"]
FILLER_WORDS = ["the", "movie", "film", "was", "a", "and", "plot", "cast", "really", "quite"]
LABELS = ["negative", "positive"]


def tiny_dataset(n: int = 60, seed: int = 0) -> list[dict]:
    """`n` balanced rows of {"text", "label"} whose sentiment is given by a single word."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = LABELS[i % 2]
        cue = rng.choice(POSITIVE_WORDS if label == "positive" else NEGATIVE_WORDS)
        words = rng.choices(FILLER_WORDS, k=rng.randint(2, 12))
        words.insert(rng.randint(0, len(words)), cue)
        rows.append({"text": " ".join(words).capitalize() + ".", "label": label})
    return rows


ARCHITECTURES = ("bert", "distilbert", "roberta", "mpnet")
# Special tokens in id order: BERT style ([PAD] = 0) or RoBERTa / MPNet style (<pad> = 1).
BERT_SPECIALS = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
ROBERTA_SPECIALS = {"cls": "<s>", "pad": "<pad>", "sep": "</s>", "unk": "<unk>", "mask": "<mask>"}


def build_tiny_tokenizer(out_dir: Path, arch: str = "bert", extra_words: tuple[str, ...] = ()):
    """A WordLevel fast tokenizer in the style of `arch`, saved with `save_pretrained` (writes
    tokenizer.json). RoBERTa and MPNet use `<s>`/`<pad>`/`<unk>` and no token_type_ids."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    bert_style = arch in ("bert", "distilbert")
    specials = BERT_SPECIALS if bert_style else ROBERTA_SPECIALS
    words = sorted({*POSITIVE_WORDS, *NEGATIVE_WORDS, *FILLER_WORDS, ".", ",", "!", *extra_words})
    vocab = {tok: i for i, tok in enumerate([*specials.values(), *words])}
    cls, sep = specials["cls"], specials["sep"]
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=specials["unk"]))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}",
        pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        **{f"{role}_token": token for role, token in specials.items()},
        model_max_length=64,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"]
        if arch == "bert"
        else ["input_ids", "attention_mask"],
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out_dir)
    return fast


def tiny_config(arch: str, vocab_size: int, **extra):
    """A 2-layer, 32-wide config of `arch` (bert, distilbert, roberta or mpnet)."""
    from transformers import BertConfig, DistilBertConfig, MPNetConfig, RobertaConfig

    labels = {"id2label": dict(enumerate(LABELS)), "label2id": {n: i for i, n in enumerate(LABELS)}}
    if arch == "distilbert":
        return DistilBertConfig(
            vocab_size=vocab_size,
            dim=32,
            n_layers=2,
            n_heads=2,
            hidden_dim=64,
            max_position_embeddings=64,
            **labels,
            **extra,
        )
    common = {
        "vocab_size": vocab_size,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        **labels,
        **extra,
    }
    if arch == "bert":
        return BertConfig(max_position_embeddings=64, **common)
    # positions start after the padding index (1): 64 tokens need 66 positions
    if arch == "roberta":
        return RobertaConfig(
            max_position_embeddings=66,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
            type_vocab_size=1,
            **common,
        )
    if arch == "mpnet":
        return MPNetConfig(max_position_embeddings=66, pad_token_id=1, **common)
    raise ValueError(f"unknown tiny architecture {arch!r}; choose from {ARCHITECTURES}")


def build_tiny_model(
    out_dir: Path, seed: int = 0, arch: str = "bert", extra_words: tuple[str, ...] = ()
) -> Path:
    """Save an untrained 2-layer `arch` sequence classifier + its tokenizer into `out_dir`."""
    import torch
    from transformers import AutoModelForSequenceClassification

    tokenizer = build_tiny_tokenizer(out_dir, arch, extra_words)
    torch.manual_seed(seed)
    config = tiny_config(arch, len(tokenizer))
    AutoModelForSequenceClassification.from_config(config).save_pretrained(out_dir)
    return out_dir


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return path


def train_tiny_model(model_dir: Path, rows: list[dict], steps: int = 25, seed: int = 0) -> Path:
    """Fine-tune the tiny model in `model_dir` in place on `{"text", "label": int}` rows (seconds).

    Plain torch, full-batch AdamW: enough for the one-word sentiment cue to be learned, so
    predictions are confident and parity / agreement checks mean something.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    batch = tokenizer([r["text"] for r in rows], padding=True, return_tensors="pt")
    labels = torch.tensor([r["label"] for r in rows])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    model.save_pretrained(model_dir)
    return model_dir


def make_tiny_run(run_dir: Path, arch: str = "bert", train_rows: int = 200, seed: int = 0) -> Path:
    """A training run directory (docs/contracts.md) holding a tiny `arch` model fine-tuned on
    `train_rows` rows: the input export/ and training.distill read, made in seconds."""
    label_id = {name: i for i, name in enumerate(LABELS)}

    def rows(n: int, data_seed: int) -> list[dict]:
        return [
            {"text": r["text"], "label": label_id[r["label"]]} for r in tiny_dataset(n, data_seed)
        ]

    train = rows(train_rows, 10 + seed)
    for split, part in (("train", train), ("validation", rows(40, 1)), ("test", rows(40, 2))):
        write_jsonl(run_dir / "data" / f"{split}.jsonl", part)
    build_tiny_model(run_dir / "model", seed=seed, arch=arch)
    train_tiny_model(run_dir / "model", train, seed=seed)
    write_run_info(run_dir, f"tiny-{arch}")
    return run_dir


def write_run_info(run_dir: Path, base_model: str) -> None:
    """The run_info.json and (empty) metrics.json of a tiny run dir (docs/contracts.md)."""
    info = {
        "run_id": run_dir.name,
        "base_model": base_model,
        "labels": LABELS,
        "max_length": 32,
        "data_fingerprint": "0" * 64,
        "data_source": "tests.tiny",
        "git_sha": None,
        "created_at": "2026-01-01T00:00:00+00:00",
    }
    (run_dir / "run_info.json").write_text(json.dumps(info, indent=2))
    (run_dir / "metrics.json").write_text(json.dumps({"validation": {}, "test": {}}))
