"""Greedy ``generate`` with an attached plain late prompt, with and without the KV cache:
time per new token as the input grows, and whether the outputs agree (issue 33).

    python benchmarks/bench_generate.py

On the embedded SmolLM2 (``--model``), a plain prompt (``generator="none"``, 20 tokens) at
the middle prompt layer is attached to the ``LlamaForCausalLM``; its weights are seeded
random values (the time of a step does not depend on them). For each input length
(``--lengths``, tokens of a repeated English sentence) ``generate`` makes ``--new-tokens``
tokens greedily (``min_new_tokens`` = ``max_new_tokens``, so no early stop), cached and
uncached, ``--repeats`` times each (interleaved, median kept), in one process with
``--threads`` torch threads. Without the cache every step recomputes the whole sequence, so
its time per token grows with the length; with it, each new token runs once through the
layers. Writes ``generate.json`` and ``generate.md`` into ``--out`` (default
benchmarks/results).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import harness
from harness import RESULTS

SENTENCE = "The late prompt joins the hidden states in the middle of the network. "


def main(argv: list[str] | None = None) -> int:
    p = harness.parser(__doc__, data_dir=False)
    p.add_argument("--model", default="smollm2")
    p.add_argument("--lengths", default="16,64,256", help="comma list of input lengths in tokens")
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    lengths = [int(v) for v in args.lengths.split(",") if v.strip()]
    if not lengths or min(lengths) < 1 or args.new_tokens < 1 or args.repeats < 1:
        p.error(f"--lengths {args.lengths!r}, --new-tokens {args.new_tokens}, --repeats {args.repeats}: "
                "give positive lengths, new tokens and repeats")

    import torch

    from lpt_probe.layers import middle_prompt_layer
    from lpt_probe.model import LatePrompt, attach_late_prompt
    from lpt_probe.model.backbone import Backbone
    from lpt_probe.model.late_prompt import LatePromptConfig, LatePromptModel
    from lpt_probe.model.loading import load_model

    torch.set_num_threads(args.threads)
    model, tokenizer, info = load_model(args.model, head="lm")
    backbone = Backbone(model)
    pl = middle_prompt_layer(backbone.num_hidden_layers)
    torch.manual_seed(0)
    words = tokenizer(" yes no", add_special_tokens=False)["input_ids"][:2]
    lpt = LatePromptModel(backbone, LatePromptConfig(prompt_layer=pl, generator="none"), 2, words).eval()
    prompt = LatePrompt.from_model(lpt, base_model_name=args.model)
    text_ids = tokenizer(SENTENCE * (max(lengths) // 8 + 2), add_special_tokens=False)["input_ids"]
    rows, load_before = [], harness.load_average()
    with torch.inference_mode(), attach_late_prompt(model, prompt):
        for n in lengths:
            ids = torch.tensor([text_ids[:n]])
            kw = dict(attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=args.new_tokens,
                      min_new_tokens=args.new_tokens, pad_token_id=tokenizer.pad_token_id)
            times: dict[bool, list[float]] = {True: [], False: []}
            outs = {}
            for _ in range(args.repeats):
                for cached in (True, False):
                    t0 = time.perf_counter()
                    outs[cached] = model.generate(ids, use_cache=cached, **kw)
                    times[cached].append(time.perf_counter() - t0)
            same = outs[True].tolist() == outs[False].tolist()
            row = {"input_tokens": n, "new_tokens": args.new_tokens, "same_output": same}
            for cached, name in ((True, "cached"), (False, "uncached")):
                row[f"{name}_ms_per_token"] = 1000 * statistics.median(times[cached]) / args.new_tokens
            row["speedup"] = row["uncached_ms_per_token"] / row["cached_ms_per_token"]
            rows.append(row)
            print(f"{n:5d} input tokens: cached {row['cached_ms_per_token']:.1f} ms/token, uncached "
                  f"{row['uncached_ms_per_token']:.1f} ms/token, same output: {same}", flush=True)
    record = {"command": harness.command(__file__, argv), "machine": harness.machine(torch=True),
              "model": args.model, "prompt_layer": pl, "threads": args.threads, "repeats": args.repeats,
              "load_average": [load_before, harness.load_average()], "rows": rows}
    harness.write_json(Path(args.out) / "generate.json", record)
    lines = harness.report_head("generate with an attached plain late prompt: KV cache or not",
                                harness.command(__file__, argv))
    lines += [harness.machine_line(args.threads), "",
              f"{args.model}, plain prompt (20 tokens) at prompt layer {pl}, greedy, {args.new_tokens} new tokens, "
              f"median of {args.repeats} interleaved repeats; load average {load_before:.1f} before, "
              f"{harness.load_average():.1f} after.", "",
              "| input tokens | cached ms/token | uncached ms/token | uncached / cached | same output |",
              "|---:|---:|---:|---:|:---:|"]
    lines += [f"| {r['input_tokens']} | {r['cached_ms_per_token']:.1f} | {r['uncached_ms_per_token']:.1f} | "
              f"{r['speedup']:.2f} | {'yes' if r['same_output'] else 'no'} |" for r in rows]
    harness.write_report(Path(args.out) / "generate.md", "\n".join(lines + [""]))
    return 0 if all(r["same_output"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
