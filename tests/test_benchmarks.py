"""The benchmark script runs on tiny models on CPU, so that it cannot rot."""
import json

import pytest

from benchmarks.unlearn_step import main


@pytest.mark.parametrize("fast, shown", [([], "eager"), (["--bucket-batches", "2", "--attn-implementation", "sdpa",
                                                            "--gradient-checkpointing"],
                                                           "buckets 2, sdpa, checkpointing")])
def test_unlearn_step_benchmark_on_tiny_models(tmp_path, capsys, fast, shown):
    out = tmp_path / "bench.jsonl"
    result = main(["--student", "tiny-llama", "--teacher", "tiny-bert", "--rank", "4", "--batch-size", "8",
                   "--steps", "3", "--warmup", "1", "--device", "cpu", "--out", str(out), *fast])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    for path in ("real", "reference"):
        timed = result[path]
        assert timed["steps_timed"] == 3 and timed["s_per_step"] > 0 and timed["peak_gib"] > 0
        assert 4 <= timed["tokens_per_sample"] <= 64 and timed["epoch_s"] > 0 and 0 < timed["floor_fraction"] < 1
    assert result["real"]["teacher_cache_rows"] >= 32 and result["speedup"] > 0 and result["peak_tflops"] > 0
    assert f"| tiny-llama | tiny-bert | none | 4 | 8 | cpu | {shown} |" in capsys.readouterr().out
