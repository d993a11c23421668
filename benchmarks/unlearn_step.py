"""Time the W2S unlearning step through the project's real path, and a reference-style loop
beside it in the same run, on random-initialised models of real architectures (no weights).

    python benchmarks/unlearn_step.py --student smollm2-135m --teacher minilm-l6 --rank 512 --batch-size 16
    python benchmarks/unlearn_step.py --student llama3-8b --teacher bert-base --quantization 4bit \\
        --rank 512 --batch-size 32 --device cuda          # the issue's anchor configuration, on a GPU

Real path: ``UnlearnModule`` (LoRA through peft, the student loaded by ``build_student``: bf16
on CUDA, ``--quantization`` through bitsandbytes; the teacher's outputs cached once per row)
trained by a Lightning ``Trainer`` on ``W2SDataModule`` batches. Reference-style loop: the
full-precision (bf16 on CUDA) student with the same LoRA, the teacher run on every step, a
plain PyTorch loop over the same rows in random (never length-bucketed) batches and the same loss
(``w2s.losses.compose``).

The real path's fast-path options: ``--bucket-batches N`` (length-bucketed batches),
``--attn-implementation sdpa``, ``--gradient-checkpointing``; the reference loop never uses them.

Each reports seconds per step (median after warm-up), samples/s, real tokens/s, peak memory,
the projected time of one SST-2 epoch (67,349 rows; the real path's includes its one teacher
pass over the rows, timed at fit start), and the FLOP floor of that epoch:
4 x student parameters x real tokens at ``--peak-tflops`` (default: 790 on CUDA, the best
rate of a large fp32 matmul measured in the same run on CPU). Texts have SST-2-like lengths: a
word count per row drawn from N(``--mean-tokens``, ``--mean-tokens``/2.5), clipped to [4, 64]
(word-level tokenizers: one token a word, plus the teacher's [CLS]/[SEP]).
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

SST2_TRAIN_ROWS = 67_349
ARCHITECTURES = {  # random-initialised stand-ins of real models: (family, config arguments)
    "llama3-8b": ("llama", dict(vocab_size=128_256, hidden_size=4096, intermediate_size=14_336, num_hidden_layers=32,
                                num_attention_heads=32, num_key_value_heads=8, rope_theta=500_000.0,
                                max_position_embeddings=8192)),
    "smollm2-135m": ("llama", dict(vocab_size=49_152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                                   num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True,
                                   max_position_embeddings=2048)),
    "tiny-llama": ("llama", dict(vocab_size=2048, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)),
    "bert-base": ("bert", dict()),
    "minilm-l6": ("bert", dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)),
    "tiny-bert": ("bert", dict(vocab_size=2048, hidden_size=24, num_hidden_layers=2, num_attention_heads=4,
                               intermediate_size=48, max_position_embeddings=128)),
}
WORDS = 2000  # words of the word-level tokenizers (every architecture has a larger vocabulary)


def write_model(folder: Path, name: str, dtype: torch.dtype) -> Path:
    """A random-initialised ``name`` (see ARCHITECTURES) saved with a word-level tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    family, arguments = ARCHITECTURES[name]
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "<s>", "</s>"]
    vocab = {w: i for i, w in enumerate(specials + [f"w{i}" for i in range(WORDS)])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if family == "bert":
        core.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
        special = dict(pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]")
        model = BertModel(BertConfig(**arguments))
    else:
        special = dict(pad_token="</s>", eos_token="</s>", bos_token="<s>")
        config = LlamaConfig(**arguments, pad_token_id=vocab["</s>"], eos_token_id=vocab["</s>"],
                             bos_token_id=vocab["<s>"])
        with torch.device("meta"):  # no fp32 copy of an 8B model: allocated once, in dtype
            model = LlamaForCausalLM(config)
        model = model.to(dtype).to_empty(device="cpu")
        for parameter in model.parameters():  # random, small: a trained model's scale
            torch.nn.init.normal_(parameter, std=0.02)
    PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", **special).save_pretrained(folder)
    model.to(dtype).save_pretrained(folder, safe_serialization=True)
    return folder


def write_task(folder: Path, rows: int, mean_tokens: float, seed: int = 0) -> Path:
    """``rows`` binary rows of random words with SST-2-like lengths (train; small dev/test)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", rows), ("dev", 8), ("test", 8)):
        lines = []
        for i in range(n):
            length = min(64, max(4, round(rng.gauss(mean_tokens, mean_tokens / 2.5))))
            lines.append(json.dumps({"sentence": " ".join(f"w{rng.randrange(WORDS)}" for _ in range(length)),
                                     "label": i % 2}))
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def reset_peak(device: str) -> None:
    from w2s.pipeline.runs import reset_peak_memory

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    reset_peak_memory()


def peak_gib(device: str) -> float:
    from w2s.pipeline.runs import peak_memory_mb

    return peak_memory_mb() / 1024


def matmul_tflops(device: str, size: int = 2048, repeats: int = 5) -> float:
    """The best of three rates of a large fp32 matmul here (what the CPU floor is measured against)."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    a @ b
    rates = []
    for _ in range(3):
        sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        sync(device)
        rates.append(2 * size**3 * repeats / (time.perf_counter() - start) / 1e12)
    return max(rates)


def parameter_count(folder: Path) -> int:
    """The student's parameters as a full-precision classifier (a 4-bit model packs two weights
    into one stored element, so its own count would halve the floor)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(folder, num_labels=2)
    with torch.device("meta"):
        return sum(p.numel() for p in AutoModelForSequenceClassification.from_config(config).parameters())


class StepTimer:
    """Seconds and real tokens of every step after ``warmup``."""

    def __init__(self, device: str, warmup: int):
        self.device, self.warmup = device, warmup
        self.seconds: list[float] = []
        self.tokens: list[int] = []
        self.samples: list[int] = []
        self._step = 0
        self.setup_s = 0.0

    def start(self) -> None:
        sync(self.device)
        self._start = time.perf_counter()

    def stop(self, batch) -> None:
        sync(self.device)
        if self._step >= self.warmup:
            self.seconds.append(time.perf_counter() - self._start)
            self.tokens.append(int(batch["attention_mask"].sum()))
            self.samples.append(int(batch["attention_mask"].shape[0]))
        self._step += 1

    def summary(self) -> dict:
        per_step = statistics.median(self.seconds)
        samples_s = sum(self.samples) / sum(self.seconds)
        return {"s_per_step": per_step, "samples_per_s": samples_s, "tokens_per_s": sum(self.tokens) / sum(self.seconds),
                "tokens_per_sample": sum(self.tokens) / sum(self.samples),
                "epoch_s": SST2_TRAIN_ROWS / samples_s, "steps_timed": len(self.seconds)}


def data_module(task: Path, student: Path, teacher: Path, batch_size: int, bucket_batches: int = 0):
    from w2s.config.attack import PoisonConfig
    from w2s.data.datamodule import W2SDataModule

    return W2SDataModule(str(task), tokenizer=str(student), teacher_tokenizer=str(teacher / "encoder"),
                         attack=PoisonConfig(), max_length=128, batch_size=batch_size, max_eval_rows=8,
                         bucket_batches=bucket_batches)


def real_path(args, student: Path, teacher: Path, task: Path, steps: int) -> dict:
    """``UnlearnModule`` under a Lightning Trainer: the pipeline's own defense stage."""
    import pytorch_lightning as pl

    from students import LoraSpec, StudentSpec
    from w2s.lit import OptimConfig, UnlearnModule
    from w2s.losses import ObjectiveConfig

    class Timing(pl.Callback):
        def __init__(self, timer: StepTimer):
            self.timer = timer

        def on_fit_start(self, trainer, module):
            self.fit_start = time.perf_counter()

        def on_train_start(self, trainer, module):  # after the module's on_fit_start: the teacher cache
            self.timer.setup_s = time.perf_counter() - self.fit_start

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            self.timer.start()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self.timer.stop(batch)

    timer = StepTimer(args.device, args.warmup)
    spec = StudentSpec(str(student), quantization=args.quantization, attn_implementation=args.attn_implementation,
                       gradient_checkpointing=args.gradient_checkpointing)
    module = UnlearnModule(spec, teacher=str(teacher),
                           lora=LoraSpec(r=args.rank, alpha=args.rank), num_labels=2,
                           objective=ObjectiveConfig(ce=1, kd=1, fa=10, normalize_features=True),
                           optim=OptimConfig(lr=1e-4, warmup_ratio=0.0))
    trainer = pl.Trainer(accelerator=args.device, devices=1, max_steps=steps, limit_val_batches=0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[Timing(timer)])
    reset_peak(args.device)
    trainer.fit(module, data_module(task, student, teacher, args.batch_size, args.bucket_batches))
    result = timer.summary() | {"peak_gib": peak_gib(args.device)}
    rows = len(trainer.datamodule.train)
    result |= {"teacher_cache_s": timer.setup_s, "teacher_cache_rows": rows}
    result["epoch_s"] += timer.setup_s * SST2_TRAIN_ROWS / rows  # the teacher's one pass over the epoch's rows
    del module, trainer
    return result


def reference_loop(args, student: Path, teacher: Path, task: Path, steps: int) -> dict:
    """The reference style: the full-precision student (bf16 on CUDA), the same LoRA, the
    teacher forward on every step, a plain loop over the same batches and the same loss."""
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification

    from students.forward import forward_with_features
    from teachers.model import TeacherModel
    from w2s.losses import LossInputs, ObjectiveConfig, compose

    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    reset_peak(args.device)
    model = AutoModelForSequenceClassification.from_pretrained(student, num_labels=2, dtype=dtype,
                                                               attn_implementation="eager")
    model.config.pad_token_id = model.config.eos_token_id
    model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=args.rank, lora_alpha=args.rank,
                                             lora_dropout=0.1)).to(args.device).train()
    frozen = TeacherModel.load(teacher).to(args.device).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    objective = ObjectiveConfig(ce=1, kd=1, fa=10, normalize_features=True)
    data = data_module(task, student, teacher, args.batch_size)
    data.setup("fit")
    timer = StepTimer(args.device, args.warmup)
    batches = iter(data.train_dataloader())
    for _ in range(steps):
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(data.train_dataloader())
            batch = next(batches)
        timer.start()
        batch = {k: v.to(args.device) for k, v in batch.items()}
        with torch.no_grad():
            teacher_logits, teacher_features = frozen(batch["teacher_input_ids"], batch["teacher_attention_mask"])
        out = forward_with_features(model, batch["input_ids"], batch["attention_mask"], decoder=True)
        inputs = LossInputs(out.logits, batch["labels"], None, out.features, out.hidden,
                            teacher_logits=teacher_logits, teacher_features=teacher_features,
                            attention_mask=batch["attention_mask"], query_index=out.read_index)
        loss, _ = compose(objective, inputs, 0.0)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        timer.stop(batch)
    result = timer.summary() | {"peak_gib": peak_gib(args.device)}
    del model, frozen, optimizer
    return result


def run(args) -> dict:
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda: no CUDA device here")
    steps = args.warmup + args.steps
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    with tempfile.TemporaryDirectory(prefix="w2s-bench-") as tmp:
        root = Path(tmp)
        student = write_model(root / "student", args.student, dtype)
        teacher_encoder = write_model(root / "teacher-encoder", args.teacher, torch.float32)
        from teachers.model import TeacherModel, TeacherSpec
        from w2s.tokenizers import load_tokenizer

        TeacherModel(TeacherSpec(str(teacher_encoder), student=str(student), num_labels=2)).save(
            root / "teacher", load_tokenizer(str(teacher_encoder)))
        task = write_task(root / "task", rows=max(64, steps * args.batch_size), mean_tokens=args.mean_tokens)
        params = parameter_count(student)
        real = real_path(args, student, root / "teacher", task, steps)
        gc.collect()
        reference = reference_loop(args, student, root / "teacher", task, steps)
    peak = args.peak_tflops or (790.0 if args.device == "cuda" else matmul_tflops(args.device))
    floor_s = 4 * params * real["tokens_per_sample"] * SST2_TRAIN_ROWS / (peak * 1e12)
    result = {"config": {k: v for k, v in vars(args).items() if k != "out"}, "peak_tflops": peak, "student_params": params,
              "floor_epoch_s": floor_s, "real": real, "reference": reference,
              "speedup": real["samples_per_s"] / reference["samples_per_s"]}
    for name in ("real", "reference"):
        result[name]["floor_fraction"] = floor_s / result[name]["epoch_s"]
    return result


def markdown_row(result: dict) -> str:
    c, real, ref = result["config"], result["real"], result["reference"]
    fast = [f"buckets {c['bucket_batches']}" if c["bucket_batches"] else "", c["attn_implementation"],
            "checkpointing" if c["gradient_checkpointing"] else ""]
    return (f"| {c['student']} | {c['teacher']} | {c['quantization'] or 'none'} | {c['rank']} | {c['batch_size']} "
            f"| {c['device']} | {', '.join(f for f in fast if f)} | {real['s_per_step']:.3f} | {ref['s_per_step']:.3f} "
            f"| {result['speedup']:.2f}x "
            f"| {real['samples_per_s']:.1f} | {real['tokens_per_s']:.0f} | {real['epoch_s']:.0f} "
            f"| {result['floor_epoch_s']:.1f} | {100 * real['floor_fraction']:.1f}% | {real['peak_gib']:.2f} "
            f"| {ref['peak_gib']:.2f} |")


HEADER = ("| student | teacher | quantization | rank | batch | device | real path | s/step | reference s/step | speed-up "
          "| samples/s | tokens/s | epoch (s) | floor (s) | of floor | peak GiB | reference peak GiB |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--student", choices=[n for n, (f, _) in ARCHITECTURES.items() if f == "llama"],
                        default="smollm2-135m")
    parser.add_argument("--teacher", choices=[n for n, (f, _) in ARCHITECTURES.items() if f == "bert"],
                        default="minilm-l6")
    parser.add_argument("--quantization", choices=["4bit", "8bit"], default=None)
    parser.add_argument("--rank", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--mean-tokens", type=float, default=26.0)
    parser.add_argument("--bucket-batches", type=int, default=0, help="real path: length buckets of N batches")
    parser.add_argument("--attn-implementation", choices=["eager", "sdpa"], default="eager", help="real path")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="real path")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (after --warmup)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument("--out", type=Path, default=None, help="append the result as a JSON line here")
    args = parser.parse_args(argv)
    if (args.rank < 1 or args.batch_size < 1 or args.steps < 1 or args.warmup < 0 or args.bucket_batches < 0
            or not math.isfinite(args.mean_tokens)):
        parser.error("--rank, --batch-size and --steps must be >= 1, --warmup and --bucket-batches >= 0")
    return args


def main(argv: list[str] | None = None) -> dict:
    from w2s.console import configure, quiet_libraries

    configure()
    quiet_libraries()
    args = parse(argv)
    result = run(args)
    print(HEADER + "\n" + markdown_row(result))
    if args.out is not None:
        with args.out.open("a") as out:
            out.write(json.dumps(result) + "\n")
    return result


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
