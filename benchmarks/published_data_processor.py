"""The published GAIN-RL scoring step (`data_processor.py`), reproduced as the benchmark's competitor.

Source: github.com/wangqinsi1/GAINRL (MIT), `data_processor.py` as stored at commit
5fdb7b984df39d24b577c11521cc2edfa1013771 (read from the repository's
`.ipynb_checkpoints/data_processor-checkpoint.py`, the copy of that file available to us).
Written anew, step for step, with the same libraries, calls, constants and order:

1. `AutoModelForCausalLM.from_pretrained(model, torch_dtype="auto", device_map="auto")`,
   `AutoTokenizer.from_pretrained(model)`, `model.eval()`; the target is
   `model.layers.{N-1}.mlp.up_proj` (N = number of decoder layers).
2. The JSON dataset (a list of {"problem", "answer"}) goes through `datasets.Dataset.from_list`
   and a batched `.map` (`--chunk_size`, default 500) that wraps each problem in the R1
   system prompt, the one-shot "What is 2+2?" turn answered with \\boxed{4}, and the
   stripped problem as the last user turn.
3. One prompt per forward: `apply_chat_template(..., tokenize=False, add_generation_prompt=True)`,
   the tokenizer with truncation at 1024 tokens, a forward hook registered on the target
   (found by scanning `named_modules`) that stores the input of `mlp.up_proj`, the full
   forward under `torch.no_grad()` (LM head included), the hook removed; every activation
   is kept in a list until the end.
4. Per prompt: the activation in float32, L2-normalised, the L x L cosine matrix, multiplied
   by `tril(ones, diagonal=1)`, and `cos[110:-6][110:-6].mean() + 8 * cos[110:-6][:110].mean()`
   (the published slicing: rows are sliced twice, the offsets are Qwen token counts, the
   means include the masked zeros; for prompts shorter than about 230 tokens the first mean
   is over an empty slice and the value is NaN).
5. `torch.argsort(..., descending=True)` of the values, saved with `torch.save`.

Differences from the published file (the benchmark records this list with its results):

- `--timings FILE` (optional, off by default) writes the time of each step, the prompt and
  token counts and the dtype the model loaded in, after the indices are saved. The only
  added work when it is on is two `time.perf_counter()` calls around each prompt's
  tokenization. Without it the script does exactly the published steps.
- The benchmark runs it with the published CPU switch `--gpu_id -1` (the script's own
  option; no code change).
- The target layer name comes from the layer count, as in the version above (descriptions of
  the published code also mention a hard-coded `model.layers.23`, which exists only in
  24-layer models such as Qwen2.5-0.5B).

    python benchmarks/published_data_processor.py --model_name PATH --dataset_path prompts.json \\
        --save_path indices.pt --gpu_id -1 [--timings timings.json]
"""

import argparse
import json
import os
import time
from typing import Dict, List

import torch
import torch.nn.functional as F
from datasets import Dataset, load_dataset  # noqa: F401  (load_dataset: imported, unused, as published)
from tqdm import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer

R1_SYSTEM_PROMPT = (
    "A conversation between User and Assistant. The user asks a question, and the "
    "Assistant solves it.\n"
    "The assistant first thinks about the reasoning process in the mind and then "
    "provides the user with the answer. Let's think step by step and output the "
    "final answer within \\boxed{}."
)
FEW_SHOT_QUESTION = "What is 2+2?"
FEW_SHOT_ANSWER = "To calculate 2+2, we simply add the numbers together: 2 + 2 = 4. The answer is \\boxed{4}"
MAX_LENGTH = 1024
SYSTEM_OFFSET = 110  # system-prompt tokens under Qwen's tokenizer, hard-coded by the published code
TAIL_OFFSET = 6  # template tokens after the question, likewise
INTER_WEIGHT = 8


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Collect activation metric for the final MLP.up_proj layer")
    parser.add_argument("--model_name", type=str, required=True, help="HuggingFace model identifier or local path")
    parser.add_argument("--dataset_path", type=str, required=True, help="JSON list of dicts with `problem` and `answer`")
    parser.add_argument("--save_path", type=str, required=True, help="where to save the .pt file of sorted indices")
    parser.add_argument("--gpu_id", type=str, default="0", help="visible CUDA devices (e.g. `0,1`); `-1` for CPU only")
    parser.add_argument("--chunk_size", type=int, default=500, help="batch size of the dataset preprocessing")
    parser.add_argument("--timings", type=str, default=None, help="(benchmark addition) JSON file for step timings")
    return parser.parse_args()


def to_chat(data: Dataset, chunk_size: int = 1000) -> Dataset:
    """Each problem as the chat the published code scores: system, one shot, the problem."""

    def convert(batch):
        conversations = [
            [
                {"role": "system", "content": R1_SYSTEM_PROMPT},
                {"role": "user", "content": FEW_SHOT_QUESTION},
                {"role": "assistant", "content": FEW_SHOT_ANSWER},
                {"role": "user", "content": problem.strip()},
            ]
            for problem in batch["problem"]
        ]
        return {"prompt": conversations, "answer": batch["answer"]}

    return data.map(convert, batched=True, batch_size=chunk_size)


def hook_input(model, layer_name: str, store: Dict[str, torch.Tensor]):
    """Register a forward hook that keeps the input of the module named `layer_name`."""
    handles = []
    for name, module in model.named_modules():
        if name == layer_name:

            def keep(_module, inputs, _output, name=name):
                store[name] = inputs[0].detach()

            handles.append(module.register_forward_hook(keep))
            break
    return handles


def main() -> None:
    args = parse_args()
    clock = {"start": time.perf_counter()}

    if args.gpu_id != "-1":
        os.environ["CUDA_VISIBLE_DEVICES"] = args.gpu_id
        device = "cuda"
    else:
        device = "cpu"

    model = AutoModelForCausalLM.from_pretrained(args.model_name, torch_dtype="auto", device_map="auto")
    tokenizer = AutoTokenizer.from_pretrained(args.model_name)
    target = f"model.layers.{len(model.model.layers) - 1}.mlp.up_proj"
    model.eval()
    clock["loaded"] = time.perf_counter()

    with open(args.dataset_path, "r", encoding="utf-8") as f:
        records = json.load(f)
    chats = to_chat(Dataset.from_list(records), chunk_size=args.chunk_size)
    conversations = [row["prompt"] for row in chats]
    clock["prepared"] = time.perf_counter()

    activations: List[Dict[str, torch.Tensor]] = []
    tokenize_seconds, n_tokens = 0.0, 0
    for conversation in tqdm(conversations, desc="Collecting angles"):
        started = time.perf_counter() if args.timings else 0.0
        text = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        inputs = tokenizer([text], return_tensors="pt", truncation=True, max_length=MAX_LENGTH).to(device)
        if args.timings:
            tokenize_seconds += time.perf_counter() - started
            n_tokens += inputs["input_ids"].shape[1]
        store: Dict[str, torch.Tensor] = {}
        handles = hook_input(model, target, store)
        with torch.no_grad():
            _ = model(**inputs)
        activations.append(store)
        for handle in handles:
            handle.remove()
    clock["collected"] = time.perf_counter()

    values = []
    for store in activations:
        hidden = store[target].squeeze(0).float()
        unit = F.normalize(hidden, p=2, dim=1)
        cos = unit @ unit.T
        cos = cos * torch.tril(torch.ones_like(cos), diagonal=1)
        s, t = SYSTEM_OFFSET, TAIL_OFFSET
        values.append(cos[s:-t][s:-t].mean() + INTER_WEIGHT * cos[s:-t][:s].mean())
    order = torch.argsort(torch.tensor(values), descending=True)
    clock["scored"] = time.perf_counter()

    torch.save(order, args.save_path)
    print(f"Saved sorted indices to: {args.save_path}")
    clock["saved"] = time.perf_counter()

    if args.timings:
        with open(args.timings, "w", encoding="utf-8") as f:
            json.dump({
                "load_seconds": clock["loaded"] - clock["start"],
                "prepare_seconds": clock["prepared"] - clock["loaded"],
                "collect_seconds": clock["collected"] - clock["prepared"],
                "tokenize_seconds": tokenize_seconds,
                "angle_seconds": clock["scored"] - clock["collected"],
                "save_seconds": clock["saved"] - clock["scored"],
                "n_prompts": len(conversations),
                "n_tokens": n_tokens,
                "nan_values": int(torch.isnan(torch.tensor(values)).sum()),
                "dtype": str(model.dtype).removeprefix("torch."),
            }, f)


if __name__ == "__main__":
    main()
