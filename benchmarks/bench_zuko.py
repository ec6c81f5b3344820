"""zuko reference (PyTorch, CPU): ``zuko.flows.MAF`` / ``NSF`` with an eager Adam step.

Run by ``benchmarks/run.py`` with the interpreter of a separate environment
(``pip install torch==2.13.0 zuko``). Coupling flows are zuko's ``passes=2``.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import numpy as np  # noqa: E402


def main():
    spec = common.parse_spec(__doc__)
    import torch
    import zuko

    torch.manual_seed(spec["seed"])
    train, test, batches = common.load(spec)
    kind = common.FLOWS[spec["flow"]]
    timer = common.Timer(spec["window"])
    kwargs = dict(
        features=spec["dim"],
        transforms=spec["layers"],
        hidden_features=(spec["hidden"],) * spec["depth"],
        passes=2 if kind["structure"] == "coupling" else None,
    )
    if kind["transform"] == "spline":
        flow = zuko.flows.NSF(bins=common.SPLINE_BINS, **kwargs)
    else:
        flow = zuko.flows.MAF(**kwargs)
    opt = torch.optim.Adam(flow.parameters(), lr=spec["learning_rate"])

    def step(x):
        loss = -flow().log_prob(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    batches = [torch.from_numpy(b) for b in batches]
    step(batches[0]).item()
    timer.after_first_step()
    for x in batches[1:]:
        step(x)
        timer.after_step(lambda: None)  # eager: every step has finished

    n_eval = spec["eval_batch"]
    with torch.no_grad():
        nll = -float(
            np.mean(
                np.concatenate(
                    [
                        flow().log_prob(torch.from_numpy(test[i : i + n_eval])).numpy()
                        for i in range(0, len(test), n_eval)
                    ]
                )
            )
        )
        x_eval = torch.from_numpy(np.resize(test, (n_eval, spec["dim"])))
        lp_s = common.best_time(lambda: flow().log_prob(x_eval), spec["throughput_reps"])
        sample_s = common.best_time(lambda: flow().sample((n_eval,)), spec["throughput_reps"])
        x1 = torch.from_numpy(test[:1])
        b1 = common.best_time(lambda: flow().log_prob(x1), spec["latency_reps"])
    common.emit(
        spec,
        "zuko",
        {
            **timer.ms_per_step(),
            "first_step_s": timer.first_step_s,
            "test_nll": nll,
            "log_prob_pts_per_s": n_eval / lp_s,
            "sample_pts_per_s": n_eval / sample_s,
            "inprocess_log_prob_b1_ms": b1 * 1e3,
            "versions": {
                "torch": torch.__version__,
                "zuko": zuko.__version__,
                "threads": torch.get_num_threads(),
            },
        },
    )


if __name__ == "__main__":
    main()
