"""Train the toy verifier: an outcome reward model for the toy reasoner, labelled by the grader.

1. Sample: the toy reasoner (models/toy-reasoner, the sweep's own engine and cap ladder at its
   configured temperature) answers fresh training problems (chained arithmetic mod 10, drawn
   with their own seed; every problem of the held-out set data/toy_arith.jsonl is excluded), at
   budgets 0, 3, 6, ..., 48, 50, so the verifier sees thinking cut inside steps, at step
   boundaries, and finished. Each answer is graded by the sweep's grader (orchestrator/grading.py).
2. Train: a `LlamaForSequenceClassification` with one label, initialised from the reasoner's own
   weights (the same tokenizer and shape, a new score head), reads exactly what a sweep scores
   (orchestrator/verifier.py: prompt + thinking + suffix + answer) and learns P(correct) with a
   logistic loss. The engine is closed before training starts (never vLLM and training at once
   on 2 cores). Process supervision, since the toy task knows the truth of every step:
   `--step-weight` adds a loss at each step's closing comma (`step_labels`: is the chain still
   right there?), `--synthetic` mixes finished chains of the training problems into each batch,
   half of them slipping once (`synthetic_chain`), and `--pretrain-steps` first trains on such
   chains alone with the step loss alone. All off by default: none of them taught the verifier to
   check a step in the steps tried (models/toy-verifier/README.md has the figures).
3. Evaluate (`--evaluate`): the sweep's default grid on toy_arith (budgets 0, 15, 30, 50, 16
   samples, seed 0), the verifier served by vLLM's pooling runner, and pass@1, maj@16, bon@16 and
   wmaj@16 per budget from the exact estimators (analysis/estimators.py) with their intervals.

Examples:
    .venv/bin/python jobs/train_toy_verifier.py --out models/toy-verifier
    .venv/bin/python jobs/train_toy_verifier.py --out models/toy-verifier --evaluate
    .venv/bin/python jobs/train_toy_verifier.py --out /tmp/v --problems 200 --steps 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from pathlib import Path

from jobs.train_toy_reasoner import (
    BOS,
    OPS,
    STEP_TOKENS,
    TEST_SEED,
    THINK_END,
    THINK_START,
    VOCAB,
    answer_text,
    apply_op,
    encode,
    learning_rate,
    make_example,
    make_test_set,
)

REASONER = Path("models/toy-reasoner")
DATA_SEED = 1  # training problems; the reasoner trained on seed 0's stream, the held-out set is TEST_SEED
SAMPLE_SEED = 7  # the sampling seed of the training unit (the default sweep's is 0)
TRAIN_BUDGETS = (*range(0, 49, 3), 50)
EVAL_BUDGETS = (0, 15, 30, 50)
EVAL_N = 16


def training_problems(count: int, seed: int = DATA_SEED):
    """`count` distinct problems drawn with `seed`, none of them in the held-out set (toy_arith)."""
    from orchestrator.datasets import Problem

    if seed == TEST_SEED:
        raise ValueError(f"--data-seed {seed} is the held-out set's seed; pick another")
    held_out = {ex.problem for ex in make_test_set()}
    rng, seen, problems = random.Random(seed), set(), []
    while len(problems) < count:
        ex = make_example(rng)
        if ex.problem in held_out or ex.problem in seen:
            continue
        seen.add(ex.problem)
        problems.append(Problem(f"train-{len(problems):05d}", ex.problem, ex.answer))
    return problems


def sample_sequences(problems, n_samples: int, budgets, seed: int) -> list[dict]:
    """Every distinct (problem, sample, continuation) of the cap ladder with its answer graded: one record
    per verifier input (prompt + continuation + answer), with its label and where it came from."""
    from orchestrator.budget import cap_ladder
    from orchestrator.compose import compose
    from orchestrator.engines.vllm import VLLMEngine
    from orchestrator.units import Unit, derive_seed
    from orchestrator.verifier import verifier_sequence

    model = compose([]).model  # the toy reasoner as the default sweep configures it
    unit = Unit("verifier-data", model, "toy_train", tuple(problems), tuple(budgets), n_samples, seed, "cap")
    engine = VLLMEngine(model)
    try:
        prompts = [engine.prompt_ids(p.problem) for p in problems]
        samples = [(pi, si, derive_seed(seed, p.id, si)) for pi, p in enumerate(problems) for si in range(n_samples)]
        start = time.time()
        thinkings, _ = engine.think(unit, prompts, samples)
        ladders = [cap_ladder(t, unit.budgets, engine.suffix_ids, engine.think_end_id) for t in thinkings]
        outputs = engine.answer(unit, prompts, samples, ladders)
        print(f"sampled {len(samples)} samples, {len(outputs)} answers in {time.time() - start:.0f}s", flush=True)
        records, grading = [], []
        for (pi, si, _), ladder in zip(samples, ladders):
            seen: set[tuple[int, ...]] = set()
            for rung in ladder:
                if rung.continuation is None or rung.continuation in seen:
                    continue
                seen.add(rung.continuation)
                out = outputs[(pi, si, *rung.continuation)]
                records.append({"problem_id": problems[pi].id, "sample_idx": si, "budget": rung.budget,
                                "forced": rung.forced, "answer_text": out.outputs[0].text,
                                "ids": list(verifier_sequence(prompts[pi], rung.continuation,
                                                              out.outputs[0].token_ids, engine.eos_id))})
                grading.append(engine.graders.grade(out.outputs[0].text, problems[pi].answer))
        for record, future in zip(records, grading):
            record["extracted_answer"], record["correct"] = future.result()
    finally:
        engine.close()
    return records


def rung_records(problems, n_samples: int, budgets, seed: int) -> list[dict]:
    """Like `sample_sequences` but one record per (problem, sample, budget), as a sweep's rows are (for
    evaluation): rows sharing a continuation repeat its sequence."""
    from orchestrator.budget import cap_ladder
    from orchestrator.compose import compose
    from orchestrator.engines.vllm import VLLMEngine
    from orchestrator.units import Unit, derive_seed
    from orchestrator.verifier import verifier_sequence

    model = compose([]).model
    unit = Unit("verifier-eval", model, "toy_arith", tuple(problems), tuple(budgets), n_samples, seed, "cap")
    engine = VLLMEngine(model)
    try:
        prompts = [engine.prompt_ids(p.problem) for p in problems]
        samples = [(pi, si, derive_seed(seed, p.id, si)) for pi, p in enumerate(problems) for si in range(n_samples)]
        thinkings, _ = engine.think(unit, prompts, samples)
        ladders = [cap_ladder(t, unit.budgets, engine.suffix_ids, engine.think_end_id) for t in thinkings]
        outputs = engine.answer(unit, prompts, samples, ladders)
        records, grading = [], []
        for (pi, si, _), ladder in zip(samples, ladders):
            for rung in ladder:
                record = {"problem_id": problems[pi].id, "sample_idx": si, "budget": rung.budget, "ids": None}
                if rung.continuation is None:
                    record.update(extracted_answer=None, correct=False)
                    grading.append(None)
                else:
                    out = outputs[(pi, si, *rung.continuation)]
                    record["ids"] = list(verifier_sequence(prompts[pi], rung.continuation, out.outputs[0].token_ids,
                                                           engine.eos_id))
                    grading.append(engine.graders.grade(out.outputs[0].text, problems[pi].answer))
                records.append(record)
        for record, future in zip(records, grading):
            if future is not None:
                record["extracted_answer"], record["correct"] = future.result()
    finally:
        engine.close()
    return records


def build_verifier(reasoner: Path):
    """LlamaForSequenceClassification with one label, its backbone the reasoner's weights (or, given a
    verifier's directory, that verifier whole, to train it on)."""
    import torch
    from transformers import LlamaForSequenceClassification

    model = LlamaForSequenceClassification.from_pretrained(reasoner, num_labels=1, torch_dtype=torch.float32)
    model.config.pad_token_id = 0  # <pad>: never inside a sequence, so HF pools the last real token as vLLM does
    model.config.id2label, model.config.label2id = {0: "correct"}, {"correct": 0}
    model.config.architectures = ["LlamaForSequenceClassification"]
    return model


def step_labels(ids: list[int]) -> list[tuple[int, bool]]:
    """Process labels of one verifier input: for each whole step written in its thinking, the position of
    the step's closing comma and whether the chain is still right there (every step so far copied its
    operator and operand from the problem and wrote the true running value). The toy task knows the truth
    of every step, so the verifier can be told where a chain slipped, not only that its answer was wrong
    (a slipped step is a few percent of the samples, too rare to learn from the outcome alone)."""
    tokens = [VOCAB[i] for i in ids]
    think = tokens.index(THINK_START)
    end = tokens.index(THINK_END, think) if THINK_END in tokens[think:] else len(tokens)
    thinking = tokens[think + 1:end]
    value, operations = parse_problem(problem_text(ids))
    labels, right = [], True
    for k in range(len(thinking) // STEP_TOKENS):
        op, operand, equals, result, comma = thinking[k * STEP_TOKENS:(k + 1) * STEP_TOKENS]
        if k < len(operations):
            value = apply_op(value, *operations[k])
            right = right and (op, operand, equals, result, comma) == (operations[k][0], str(operations[k][1]), "=",
                                                                       str(value), ",")
        else:
            right = False  # a step the problem does not have
        labels.append((think + 1 + (k + 1) * STEP_TOKENS - 1, right))
    return labels


def problem_text(ids: list[int]) -> str:
    """The problem of a verifier input: the tokens between `<bos>` and `<think>`."""
    return "".join(VOCAB[i] for i in ids[1:ids.index(VOCAB.index(THINK_START))])


def parse_problem(problem: str) -> tuple[int, list[tuple[str, int]]]:
    """A problem's start digit and operations: `4+7*3` is (4, [('+', 7), ('*', 3)])."""
    return int(problem[0]), [(problem[i], int(problem[i + 1])) for i in range(1, len(problem) - 1, 2)]


def synthetic_chain(problem: str, rng: random.Random, slip: bool) -> dict:
    """A finished chain for `problem`, written as the reasoner writes one, labelled by the truth. With `slip`
    it slips once as the reasoner's own slips look: one step miscopies its operator or operand or miswrites
    its result, every later step follows from the wrong value, and the answer is the last value (right only
    if the slip washes out mod 10)."""
    start, operations = parse_problem(problem)
    where = rng.randrange(len(operations)) if slip else -1
    kind = rng.choice(("operator", "operand", "result"))
    value = truth = start
    thinking = []
    for k, (op, operand) in enumerate(operations):
        truth = apply_op(truth, op, operand)
        if k == where and kind == "operator":
            op = rng.choice([o for o in OPS if o != op])
        elif k == where and kind == "operand":
            operand = rng.choice([d for d in range(10) if d != operand])
        right = apply_op(value, op, operand)
        value = rng.choice([d for d in range(10) if d != right]) if k == where and kind == "result" else right
        thinking.append(f"{op}{operand}={value},")
    text = f"{problem}{THINK_START}{''.join(thinking)}{THINK_END}{answer_text(str(value))}"
    return {"ids": [VOCAB.index(BOS), *encode(text)], "correct": value == truth}


def batch_tensors(records: list[dict]):
    """Right-padded ids, their mask, the outcome labels and the step labels as (row, position, label)."""
    import torch

    width = max(len(r["ids"]) for r in records)
    ids = torch.tensor([r["ids"] + [0] * (width - len(r["ids"])) for r in records])
    mask = torch.tensor([[1] * len(r["ids"]) + [0] * (width - len(r["ids"])) for r in records])
    labels = torch.tensor([float(r["correct"]) for r in records])
    steps = [(row, position, float(right))
             for row, r in enumerate(records) for position, right in step_labels(r["ids"])]
    return ids, mask, labels, torch.tensor(steps).reshape(-1, 3)


def position_logits(model, ids, mask):
    """The score head's logit at every position (the sequence's score is its last token's, as vLLM pools it)."""
    return model.score(model.model(input_ids=ids, attention_mask=mask).last_hidden_state).squeeze(-1)


def auc(p, y) -> float:
    """Area under the ROC curve: the chance a random positive is scored above a random negative."""
    import numpy as np

    order = np.argsort(p)
    ranks = np.empty(len(p))
    ranks[order] = np.arange(1, len(p) + 1)
    positives = y.sum()
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / max(positives * (len(y) - positives), 1))


def evaluate_loss(model, records: list[dict], batch: int = 256) -> dict[str, float]:
    """Mean logistic loss, accuracy at 0.5 and AUC of the predicted P(correct) on `records`, and the AUC of
    the step labels (is the chain still right at this step's comma?)."""
    import numpy as np
    import torch

    probs, labels, step_probs, step_truth = [], [], [], []
    with torch.no_grad():
        for i in range(0, len(records), batch):
            ids, mask, y, process = batch_tensors(records[i:i + batch])
            logits = position_logits(model, ids, mask)
            probs.append(torch.sigmoid(logits[torch.arange(len(ids)), mask.sum(1) - 1]).numpy())
            labels.append(y.numpy())
            step_probs.append(torch.sigmoid(logits[process[:, 0].long(), process[:, 1].long()]).numpy())
            step_truth.append(process[:, 2].numpy())
    p, y = np.concatenate(probs), np.concatenate(labels)
    loss = float(-np.mean(y * np.log(np.clip(p, 1e-7, 1)) + (1 - y) * np.log(np.clip(1 - p, 1e-7, 1))))
    return {"loss": loss, "accuracy": float(np.mean((p > 0.5) == (y == 1))), "auc": auc(p, y),
            "step_auc": auc(np.concatenate(step_probs), np.concatenate(step_truth))}


def train(model, records: list[dict], problems: list[str], steps: int, batch_size: int, peak_lr: float, seed: int,
          step_weight: float, synthetic: float, outcome_weight: float = 1.0) -> float:
    """AdamW on `outcome_weight` times the outcome loss (the last token: is the answer right?) plus
    `step_weight` times the process loss (each step's closing comma: is the chain still right?), both
    through the one score head. A fraction `synthetic` of each batch is `synthetic_chain`s of `problems`."""
    import torch

    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=peak_lr, weight_decay=0.01, betas=(0.9, 0.98))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    warmup = max(1, steps // 20)
    n_synthetic = round(batch_size * synthetic)
    model.train()
    start, running = time.time(), 0.0
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, steps, peak_lr, warmup)
        batch = rng.sample(records, batch_size - n_synthetic)
        batch += [synthetic_chain(rng.choice(problems), rng, slip=rng.random() < 0.5) for _ in range(n_synthetic)]
        ids, mask, labels, process = batch_tensors(batch)
        logits = position_logits(model, ids, mask)
        loss = outcome_weight * loss_fn(logits[torch.arange(len(ids)), mask.sum(1) - 1], labels)
        if step_weight and len(process):
            rows, positions = process[:, 0].long(), process[:, 1].long()
            loss = loss + step_weight * loss_fn(logits[rows, positions], process[:, 2])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        running += loss.item()
        if (step + 1) % 100 == 0 or step + 1 == steps:
            done = (step + 1) % 100 or 100
            print(f"step {step + 1:5d}/{steps}  loss {running / done:.4f}  {time.time() - start:6.0f}s", flush=True)
            running = 0.0
    model.eval()
    return time.time() - start


def save(model, out: Path, reasoner: Path) -> None:
    """Weights as safetensors, config.json (LlamaForSequenceClassification, one label), the reasoner's tokenizer."""
    from transformers import AutoTokenizer

    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(reasoner).save_pretrained(out)


async def vllm_scores(path: Path, sequences: list[list[int]]) -> list[float]:
    """Score `sequences` with the verifier on vLLM's pooling runner (the sweep's verifier engine)."""
    from orchestrator.config import VerifierConfig
    from orchestrator.engines.verifier import VerifierEngine

    cfg = VerifierConfig(name="toy-verifier", path=str(path), dtype="float32", max_model_len=128, kv_cache_gib=0.25,
                         enforce_eager=True)
    engine = await VerifierEngine.start(cfg)
    try:
        return list(await asyncio.gather(*(engine.score(s) for s in sequences)))
    finally:
        await engine.shutdown()


def evaluate(out: Path, dataset: Path, budgets=EVAL_BUDGETS, n: int = EVAL_N, seed: int = 0,
             rows: Path | None = None) -> list[dict]:
    """pass@1, maj@16, bon@16, wmaj@16 per budget on the held-out set, the verifier on vLLM's pooling runner."""
    import numpy as np
    import pandas as pd

    from analysis.estimators import best_of_k, maj_at_k, mean_ci, pass_at_k, weighted_maj_at_k
    from orchestrator.datasets import Problem

    problems = [Problem(r["id"], r["problem"], r["answer"]) for r in map(json.loads, dataset.read_text().splitlines())]
    records = rung_records(problems, n, budgets, seed)
    distinct = sorted({tuple(r["ids"]) for r in records if r["ids"] is not None and r["extracted_answer"] is not None})
    start = time.time()
    scores = dict(zip(distinct, asyncio.run(vllm_scores(out, [list(s) for s in distinct]))))
    print(f"scored {len(distinct)} distinct sequences with vLLM's pooling runner in {time.time() - start:.0f}s")
    df = pd.DataFrame(records)
    df["score"] = [scores.get(tuple(ids)) if ids is not None and a is not None else None
                   for ids, a in zip(df.ids, df.extracted_answer)]
    # Votes as maj@k groups them: the reference's class for correct rows, else the extracted answer (a digit).
    df["vote"] = [0 if c else (None if a is None else f"text:{a}") for c, a in zip(df.correct, df.extracted_answer)]
    if rows is not None:  # the scored rows, for a closer look
        df.drop(columns=["ids"]).assign(vote=[None if v is None else str(v) for v in df.vote]).to_parquet(rows)
    table = []
    for budget, group in df.groupby("budget"):
        per = {"pass@1": [], f"maj@{n}": [], f"bon@{n}": [], f"wmaj@{n}": []}
        for _, g in group.groupby("problem_id"):
            per["pass@1"].append(pass_at_k(len(g), int(g.correct.sum()), 1))
            per[f"maj@{n}"].append(maj_at_k(list(g.vote), 0, n))
            per[f"bon@{n}"].append(best_of_k(list(g.score), list(g.correct), n))
            per[f"wmaj@{n}"].append(weighted_maj_at_k(list(g.vote), list(g.score), 0, n))
        row = {"budget": int(budget)}
        for name, values in per.items():
            values = np.array(values)
            low, high = mean_ci(values, n)
            row[name] = (float(values.mean()), low, high)
        table.append(row)
        print(f"B={budget:3d}  " + "  ".join(f"{k} {v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"
                                            for k, v in row.items() if k != "budget"), flush=True)
    return table


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="model directory to write (or to evaluate)")
    parser.add_argument("--reasoner", type=Path, default=REASONER)
    parser.add_argument("--init", type=Path, default=None,
                        help="start from this verifier directory (continue training) instead of the reasoner's weights")
    parser.add_argument("--problems", type=int, default=2000, help="training problems")
    parser.add_argument("--samples", type=int, default=4, help="samples per training problem")
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0, help="torch and batch order")
    parser.add_argument("--step-weight", type=float, default=0.0,
                        help="weight of the process loss (is the chain still right at each step?) beside the outcome "
                             "loss; 0 trains on outcomes alone")
    parser.add_argument("--synthetic", type=float, default=0.0,
                        help="fraction of each batch that is synthetic finished chains of the training problems, half "
                             "of them slipping once")
    parser.add_argument("--pretrain-steps", type=int, default=0,
                        help="first train this many steps on synthetic chains alone, with the process loss alone")
    parser.add_argument("--pretrain-lr", type=float, default=5e-4)
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads (1 on a machine shared with other jobs: 2 threads contending there "
                             "ran 10x slower than on idle cores)")
    parser.add_argument("--data-seed", type=int, default=DATA_SEED, help="training problems")
    parser.add_argument("--cache", type=Path, default=None, help="keep the sampled training records here (JSON)")
    parser.add_argument("--evaluate", action="store_true", help="only evaluate --out on --dataset")
    parser.add_argument("--dataset", type=Path, default=Path("data/toy_arith.jsonl"))
    parser.add_argument("--rows", type=Path, default=None, help="--evaluate: also write the scored rows (Parquet)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.evaluate:
        evaluate(args.out, args.dataset, rows=args.rows)
        return
    import torch

    if args.cache is not None and args.cache.is_file():
        records = json.loads(args.cache.read_text())
        print(f"read {len(records)} training records from {args.cache}")
    else:
        records = sample_sequences(training_problems(args.problems, args.data_seed), args.samples,
                                   TRAIN_BUDGETS, SAMPLE_SEED)
        if args.cache is not None:
            args.cache.write_text(json.dumps(records))
    positives = sum(r["correct"] for r in records)
    print(f"{len(records)} distinct sequences, {positives / len(records):.1%} correct", flush=True)
    # Split by problem, so the held-back problems are unseen.
    ids = sorted({r["problem_id"] for r in records})
    held_back = set(random.Random(0).sample(ids, max(1, len(ids) // 20)))  # the same split whatever --seed
    train_records = [r for r in records if r["problem_id"] not in held_back]
    valid_records = [r for r in records if r["problem_id"] in held_back]
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    model = build_verifier(args.init or args.reasoner)
    print(f"LlamaForSequenceClassification, {sum(p.numel() for p in model.parameters()):,} parameters", flush=True)
    print(f"before training, held-back problems: {evaluate_loss(model, valid_records)}", flush=True)
    problems = sorted({problem_text(r["ids"]) for r in train_records})
    rng = random.Random(1)  # synthetic chains of the held-back problems: does the verifier spot a slip?
    valid_chains = [synthetic_chain(problem_text(r["ids"]), rng, slip=i % 2 == 0) for i, r in enumerate(valid_records)]
    if args.pretrain_steps:
        seconds = train(model, [], problems, args.pretrain_steps, args.batch_size, args.pretrain_lr, args.seed,
                        step_weight=1.0, synthetic=1.0, outcome_weight=0.0)
        print(f"pretrained {args.pretrain_steps} steps on synthetic chains in {seconds / 60:.1f} min; held-back "
              f"synthetic chains: {evaluate_loss(model, valid_chains)}", flush=True)
    seconds = train(model, train_records, problems, args.steps, args.batch_size, args.lr, args.seed, args.step_weight,
                    args.synthetic)
    print(f"trained {args.steps} steps in {seconds / 60:.1f} min; held-back problems: "
          f"{evaluate_loss(model, valid_records)}; held-back synthetic chains: {evaluate_loss(model, valid_chains)}",
          flush=True)
    save(model, args.out, args.reasoner)
    print(f"saved to {args.out}")


if __name__ == "__main__":
    main()
