"""Caption tokenizers.

A pretrained LM uses its own tokenizer. A tiny random-init LM gets a byte-level BPE tokenizer trained on
the training captions with the `tokenizers` library (about a second for 100k captions); its JSON is kept
in the checkpoint's hyper-parameters and saved in the run folder, so inference needs nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"


def train_caption_tokenizer(captions: Iterable[str], *, vocab_size: int) -> str:
    """Train a lower-cased byte-level BPE on ``captions``; return its JSON (``tokenizer.json`` content).

    Lower-casing is lossless for scoring: the COCO toolkit's PTB tokenizer lower-cases everything anyway.
    """
    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS, UNK],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(captions, trainer=trainer)
    return tokenizer.to_str()


def tokenizer_from_json(tokenizer_json: str) -> PreTrainedTokenizerFast:
    """Wrap a trained ``tokenizers`` JSON for ``transformers`` (pad/bos/eos/unk set). Plain data: no pickle."""
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(tokenizer_json),
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        clean_up_tokenization_spaces=False,
    )


def load_pretrained_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """The tokenizer of a pretrained LM. Padding side is irrelevant (captions follow an equal-length
    visual prefix) but a pad token is required for batching, so fall back to EOS."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except OSError as err:
        raise FileNotFoundError(
            f"cannot load the tokenizer of LM '{name_or_path}' (offline, or not a local folder): {err}. "
            "Point model.lm.name at a local folder with the LM's config, weights and tokenizer files."
        ) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def save_tokenizer_json(tokenizer_json: str, folder: str | Path) -> Path:
    path = Path(folder) / "tokenizer.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tokenizer_json)
    return path
