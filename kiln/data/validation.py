"""k-fold cross-validation of a model-building function."""
from __future__ import annotations

import numpy as np

from .preprocessing import kfold_indices


def cross_validate(build_fn, x, y, k=5, fit_kwargs=None, evaluate_kwargs=None, seed=None,
                   shuffle=True, stratify=False, verbose=0) -> dict:
    """Train and evaluate a fresh model on each of ``k`` folds.

    ``build_fn()`` returns a compiled model (called once per fold, so each fold starts from
    new weights); it is fitted on the other folds with ``fit(**fit_kwargs)`` and evaluated
    on the held-out fold. ``stratify=True`` keeps class proportions (``y`` as labels or
    one-hot rows). Returns::

        {"folds": [{"loss": ..., "accuracy": ...}, ...],      # one dict per fold
         "mean": {"loss": ..., ...}, "std": {"loss": ..., ...}}   # std: population (ddof=0)
    """
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same number of samples, got {len(x)} and "
                         f"{len(y)}")
    fit_kwargs = dict(fit_kwargs or {})
    fit_kwargs.setdefault("verbose", 0)
    evaluate_kwargs = dict(evaluate_kwargs or {})
    evaluate_kwargs.setdefault("verbose", 0)
    folds = []
    for i, (tr, va) in enumerate(kfold_indices(len(x), k, seed, shuffle,
                                               y if stratify else None)):
        model = build_fn()
        if not getattr(model, "compiled", False):
            raise ValueError("cross_validate: build_fn must return a compiled model "
                             "(call model.compile(...) inside it)")
        model.fit(x[tr], y[tr], **fit_kwargs)
        logs = model.evaluate(x[va], y[va], return_dict=True, **evaluate_kwargs)
        folds.append({n: float(v) for n, v in logs.items()})
        if verbose:
            shown = " - ".join(f"{n}: {v:.4f}" for n, v in folds[-1].items())
            print(f"fold {i + 1}/{k}: {shown}")
    names = list(folds[0])
    return {"folds": folds,
            "mean": {n: float(np.mean([f[n] for f in folds])) for n in names},
            "std": {n: float(np.std([f[n] for f in folds])) for n in names}}
