"""Real tabular data shipped inside scikit-learn and statsmodels, shaped as a model's inputs.

Nothing is downloaded: every table is a file inside the installed wheel. Each :class:`Table`
says which columns a model logs as numeric and categorical inputs, which column (if any) is
its segment, and how its prediction is computed from the logged numeric inputs (a linear or
logistic model fitted once to a real target column of the same table), so that a change
injected into an input also moves the prediction, as it would in production.

=============  ==========================  ======  ===============================================
table          source                      rows    what makes it realistic
=============  ==========================  ======  ===============================================
``cancer``     sklearn breast_cancer       569     correlated, right-skewed and heavy-tailed
                                                   (``area_error``: skew 5.5) measurements; two
                                                   categoricals binned from other columns;
                                                   classifier, unsegmented
``rand``       statsmodels randhie         20,190  the RAND health insurance experiment: zero-
                                                   inflated and discrete columns; segment = the
                                                   insurance ``plan`` (free 55%, 25% 20%, 95% 18%,
                                                   50% 7%); real categorical ``health`` (top share
                                                   0.55); regression, segmented
``fair``       statsmodels fair            6,366   survey answers: every numeric column discrete
                                                   (6-7 values), real categoricals; segment =
                                                   occupation group; classifier, segmented
``diabetes``   sklearn diabetes (raw)      442     small clinical table; regression, unsegmented
=============  ==========================  ======  ===============================================

>>> t = load("cancer")
>>> t.rows, t.segment, t.numeric[:2]
(569, None, ('mean_texture', 'mean_radius'))
>>> round(float(t.shares("texture_band")["low"]), 2)
0.55
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

import numpy as np

Columns = dict[str, np.ndarray]


@dataclass(frozen=True)
class Table:
    """One real table as a model's logged inputs."""

    name: str
    source: str
    columns: Columns  # numeric columns float64, categorical ones str objects
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    segment: str | None  # the column whose value is the event's segment
    score: Callable[[Columns], np.ndarray]  # the model's prediction from the numeric inputs
    labels: tuple[str, str] | None  # classifier: (negative, positive) label; None: regression
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return len(next(iter(self.columns.values())))

    @property
    def inputs(self) -> int:
        """Inputs compared per scope: features plus the prediction (score, and label)."""
        return len(self.numeric) + len(self.categorical) + (2 if self.labels else 1)

    def segments(self) -> list[str]:
        """The segment values, largest first (empty: unsegmented)."""
        if self.segment is None:
            return []
        values, counts = np.unique(self.columns[self.segment], return_counts=True)
        return [str(v) for _, v in sorted(zip(-counts, values, strict=True))]

    def shares(self, column: str, rows: np.ndarray | None = None) -> dict[str, float]:
        values = self.columns[column] if rows is None else self.columns[column][rows]
        found, counts = np.unique(values, return_counts=True)
        return {str(v): c / len(values) for v, c in zip(found, counts, strict=True)}


def _bands(values: np.ndarray, shares: tuple[float, ...], names: tuple[str, ...]) -> np.ndarray:
    """A categorical binned from a numeric column at the quantiles giving ``shares``."""
    edges = np.quantile(values, np.cumsum(shares)[:-1])
    return np.asarray(names, dtype=object)[np.searchsorted(edges, values, side="right")]


def _fitted(
    data: Columns, inputs: tuple[str, ...], target: np.ndarray, classifier: bool
) -> Callable[[Columns], np.ndarray]:
    """A linear (or logistic) model of ``target`` on the standardised ``inputs``, frozen."""
    from sklearn.linear_model import LinearRegression, LogisticRegression

    x = np.column_stack([data[c] for c in inputs])
    mean, sd = x.mean(axis=0), x.std(axis=0)
    z = (x - mean) / sd
    if classifier:
        model = LogisticRegression(C=0.02, max_iter=1000).fit(z, target)
        w, b = model.coef_[0], float(model.intercept_[0])
    else:
        model = LinearRegression().fit(z, target)
        w, b = model.coef_, float(model.intercept_)

    def score(cols: Columns) -> np.ndarray:
        lin = ((np.column_stack([cols[c] for c in inputs]) - mean) / sd) @ w + b
        out = 1.0 / (1.0 + np.exp(-lin)) if classifier else lin
        return np.round(out, 5)

    return score


def _cancer() -> Table:
    from sklearn.datasets import load_breast_cancer

    raw = load_breast_cancer()
    frame = {n.replace(" ", "_"): raw.data[:, i] for i, n in enumerate(raw.feature_names)}
    numeric = (
        "mean_texture",  # near-normal (skew 0.65)
        "mean_radius",
        "mean_smoothness",
        "mean_concavity",  # skewed, many near zero
        "worst_area",  # right-skewed (1.9)
        "area_error",  # heavy-tailed (skew 5.5)
        "fractal_dimension_error",  # heavy-tailed (3.9)
        "worst_symmetry",
    )
    cols: Columns = {c: frame[c].astype(np.float64) for c in numeric}
    cols["texture_band"] = _bands(
        frame["worst_texture"], (0.55, 0.25, 0.15, 0.05), ("low", "mid", "high", "very_high")
    )
    cols["shape_band"] = _bands(
        frame["worst_compactness"], (0.6, 0.3, 0.1), ("round", "oval", "irregular")
    )
    malignant = (raw.target == 0).astype(int)
    return Table(
        "cancer",
        "sklearn.datasets.load_breast_cancer",
        cols,
        numeric,
        ("texture_band", "shape_band"),
        None,
        _fitted(cols, numeric, malignant, classifier=True),
        ("benign", "malignant"),
    )


def _rand() -> Table:
    import statsmodels.api as sm

    d = sm.datasets.randhie.load_pandas().data
    numeric = ("lpi", "fmde", "physlm", "disea")
    cols: Columns = {c: d[c].to_numpy(np.float64) for c in numeric}
    coins = d["lncoins"].to_numpy(np.float64)
    plan = np.where(
        coins == 0, "free", np.where(coins < 3.5, "c25", np.where(coins < 4.2, "c50", "c95"))
    )
    cols["plan"] = plan.astype(object)
    health = np.where(
        d["hlthp"] == 1,
        "poor",
        np.where(d["hlthf"] == 1, "fair", np.where(d["hlthg"] == 1, "good", "excellent")),
    )
    cols["health"] = health.astype(object)
    cols["idp"] = np.where(d["idp"] == 1, "yes", "no").astype(object)
    return Table(
        "rand",
        "statsmodels.datasets.randhie",
        cols,
        numeric,
        ("health", "idp"),
        "plan",
        _fitted(cols, numeric, d["mdvis"].to_numpy(np.float64), classifier=False),
        None,
    )


def _fair() -> Table:
    import statsmodels.api as sm

    d = sm.datasets.fair.load_pandas().data
    numeric = ("age", "yrs_married", "children", "educ")
    cols: Columns = {c: d[c].to_numpy(np.float64) for c in numeric}
    cols["rate_marriage"] = d["rate_marriage"].astype(int).astype(str).to_numpy(object)
    cols["religious"] = d["religious"].astype(int).astype(str).to_numpy(object)
    years = d["yrs_married"].to_numpy(np.float64)
    cols["marriage_band"] = np.where(
        years <= 6, "early", np.where(years <= 13, "middle", "long")
    ).astype(object)  # real bins of a real column: shares 0.56 / 0.19 / 0.26
    occupation = d["occupation"].to_numpy(int)
    groups = {1: "manual", 2: "manual", 3: "white_collar", 4: "professional", 5: "managerial",
              6: "managerial"}  # fmt: skip
    cols["occupation"] = np.array([groups[o] for o in occupation], dtype=object)
    affair = (d["affairs"].to_numpy() > 0).astype(int)
    return Table(
        "fair",
        "statsmodels.datasets.fair",
        cols,
        numeric,
        ("rate_marriage", "religious", "marriage_band"),
        "occupation",
        _fitted(cols, numeric, affair, classifier=True),
        ("none", "affair"),
    )


def _diabetes() -> Table:
    from sklearn.datasets import load_diabetes

    raw = load_diabetes(scaled=False)
    names = list(raw.feature_names)
    numeric = ("age", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")
    cols: Columns = {c: raw.data[:, names.index(c)].astype(np.float64) for c in numeric}
    cols["sex"] = np.where(raw.data[:, names.index("sex")] == 1, "1", "2").astype(object)
    return Table(
        "diabetes",
        "sklearn.datasets.load_diabetes(scaled=False)",
        cols,
        numeric,
        ("sex",),
        None,
        _fitted(cols, numeric, raw.target.astype(np.float64), classifier=False),
        None,
    )


LOADERS: dict[str, Callable[[], Table]] = {
    "cancer": _cancer,
    "rand": _rand,
    "fair": _fair,
    "diabetes": _diabetes,
}


@cache
def load(name: str) -> Table:
    """The table ``name`` (one of :data:`LOADERS`), loaded once per process."""
    return LOADERS[name]()
