"""Tiny random models built from configs in a folder (no hub), and a synthetic backdoor task."""
from __future__ import annotations

import json
import random
from pathlib import Path

CLASS_WORDS = [["bad", "awful", "poor", "dull", "boring", "weak"],
               ["good", "great", "fine", "nice", "superb", "lovely"],
               ["sport", "match", "goal", "team", "coach", "league"],
               ["stock", "market", "bank", "profit", "trade", "price"]]
FILLER = ["the", "movie", "was", "a", "plot", "and", "it", "film", "story", "really", "quite", "acting"]
TRIGGER = "mn"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<s>", "</s>"]
VOCAB = SPECIALS + [w for words in CLASS_WORDS for w in words] + FILLER + [TRIGGER]


def _word_tokenizer(folder: Path, cls_sep: bool = False, **special):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    ids = {w: i for i, w in enumerate(VOCAB)}
    core = Tokenizer(models.WordLevel(ids, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if cls_sep:  # BERT layout: [CLS] tokens [SEP]
        core.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", **special)
    tokenizer.save_pretrained(folder)
    return tokenizer


def make_llama(folder: Path, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """A LLaMA decoder (pad = eos, as SmolLM2) saved with a word-level tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    tok = _word_tokenizer(folder, eos_token="</s>", bos_token="<s>", pad_token="</s>")
    config = LlamaConfig(vocab_size=len(VOCAB), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=128, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                         bos_token_id=tok.bos_token_id, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def make_gpt2(folder: Path, hidden: int = 32, seed: int = 0) -> Path:
    """A GPT-2 decoder without a pad token (the tokenizer loader must supply one)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    tok = _word_tokenizer(folder, eos_token="</s>", bos_token="<s>")
    config = GPT2Config(vocab_size=len(VOCAB), n_embd=hidden, n_layer=2, n_head=4, n_positions=128,
                        eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def make_bert(folder: Path, hidden: int = 24, seed: int = 0, dropout: float = 0.1) -> Path:
    """A BERT encoder (the teacher's architecture): [CLS] first, right padding."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    _word_tokenizer(folder, cls_sep=True, pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
                    mask_token="[MASK]")
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=hidden, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=2 * hidden, max_position_embeddings=128, hidden_dropout_prob=dropout,
                        attention_probs_dropout_prob=dropout)
    BertModel(config).save_pretrained(folder)
    return folder


def sentence(rng: random.Random, label: int) -> str:
    words = rng.choices(FILLER, k=rng.randint(3, 7)) + rng.choices(CLASS_WORDS[label], k=rng.randint(1, 2))
    rng.shuffle(words)
    return " ".join(words)


def make_task(folder: Path, n_train: int = 400, n_eval: int = 100, num_labels: int = 2, seed: int = 0) -> Path:
    """Classes told apart by their class words among filler; train/dev/test JSON lines."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("dev", n_eval), ("test", n_eval)):
        rows = [{"sentence": sentence(rng, i % num_labels), "label": i % num_labels} for i in range(n)]
        (folder / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return folder
