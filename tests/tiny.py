"""Tiny, offline stand-ins for the real model and data, shared by every stage's tests.

A 2-layer BERT with a 60-word vocabulary, built from a config and a tokenizer made here:
it trains in seconds, exports to ONNX in seconds and never touches the network.
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


def build_tiny_tokenizer(out_dir: Path):
    """A BERT-style WordLevel fast tokenizer saved with `save_pretrained` (writes tokenizer.json)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = sorted(set(POSITIVE_WORDS + NEGATIVE_WORDS + FILLER_WORDS + [".", ",", "!"]))
    vocab = {tok: i for i, tok in enumerate(specials + words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=64,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out_dir)
    return fast


def build_tiny_model(out_dir: Path, seed: int = 0) -> Path:
    """Save an untrained 2-layer BertForSequenceClassification + tokenizer into `out_dir`."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    tokenizer = build_tiny_tokenizer(out_dir)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    BertForSequenceClassification(config).save_pretrained(out_dir)
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
    from transformers import AutoTokenizer, BertForSequenceClassification

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = BertForSequenceClassification.from_pretrained(model_dir)
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
