"""The two honest baselines a roll-to-default model has to beat.

* :class:`RollRateChainModel`: what collections departments forecast with today. Month-over-month
  bucket transition matrices per product, chained ``window_months`` times (a Markov chain with
  the default state absorbing). It only knows the product and the starting bucket.
* :class:`WoeScorecardModel`: the classic credit scorecard. Each feature is binned with optimal
  binning (monotone where the feature registry gives a direction), replaced by its weight of
  evidence (WOE), and a logistic regression is fitted on the WOE values.

Both follow scikit-learn's rules: parameters only in ``__init__``, ``fit`` returns ``self``,
fitted attributes end in ``_``, and predicting before ``fit`` raises :class:`NotFittedError`.
``predict_proba`` returns a 1-D array of P(default) (not sklearn's two-column array), the
convention of every rollrisk model. Formulas are in ``docs/evaluation.md``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date
from typing import Literal

import numpy as np
import pandas as pd
import polars as pl
from numpy.typing import ArrayLike, NDArray
from optbinning import BinningProcess
from sklearn.linear_model import LogisticRegression

from rollrisk.features.registry import FeatureSpec
from rollrisk.models.roll_rates import BUCKETS as ROLL_RATE_BUCKETS
from rollrisk.models.roll_rates import dpd_bucket, roll_rate_matrix

__all__ = ["NotFittedError", "RollRateChainModel", "WoeScorecardModel", "chain_states"]


class NotFittedError(RuntimeError):
    """A model was asked to predict before ``fit`` was called."""


def _check_fitted(model: object, attribute: str) -> None:
    if not hasattr(model, attribute):
        raise NotFittedError(
            f"{type(model).__name__} is not fitted yet: call fit(...) before predicting"
        )


def _to_polars(frame: pl.DataFrame | pd.DataFrame, name: str) -> pl.DataFrame:
    if isinstance(frame, pl.DataFrame):
        return frame
    if isinstance(frame, pd.DataFrame):
        return pl.from_pandas(frame)
    raise TypeError(f"{name} must be a polars or pandas DataFrame, got {type(frame).__name__}")


# =========================================================================== roll-rate chain

DEFAULT_DPD = 90
ALL_PRODUCTS = "all"
# The lowest DPD of each bucket name of rollrisk.models.roll_rates (30 DPD wide from M2 on).
BUCKET_LOWEST_DPD: Mapping[str, int] = {
    bucket: 0 if index == 0 else 1 if index == 1 else 30 * (index - 1)
    for index, bucket in enumerate(ROLL_RATE_BUCKETS)
}


def chain_states(default_dpd: int = DEFAULT_DPD) -> list[str]:
    """States of the chain, the absorbing default state last: M0..M3 and 'M4+' for 90 DPD.

    The buckets are those of :mod:`rollrisk.models.roll_rates` (M0 current, M1 1-29, then 30
    DPD wide); every bucket whose lowest DPD is at or above ``default_dpd`` merges into the
    default state, labelled ``M{k}+`` after the first such bucket (60 DPD -> 'M3+', where the
    60-89 range counts as default). ``default_dpd`` must therefore be a bucket boundary: 30,
    60, 90, 120, 150 or 180.
    """
    boundaries = sorted(lowest for lowest in BUCKET_LOWEST_DPD.values() if lowest >= 30)
    if default_dpd not in boundaries:
        raise ValueError(
            f"default_dpd must be a roll-rate bucket boundary {boundaries} (buckets are 30 DPD "
            f"wide), got {default_dpd}"
        )
    below = [bucket for bucket, lowest in BUCKET_LOWEST_DPD.items() if lowest < default_dpd]
    return [*below, f"M{len(below)}+"]


class RollRateChainModel:
    """Markov roll-rate chain: P(reach default within ``window_months``) from product and bucket.

    Parameters
    ----------
    default_dpd:
        DPD from which an account is in the absorbing default state (90 -> "M4+"); a bucket
        boundary of :mod:`rollrisk.models.roll_rates` (30, 60, 90, 120, 150 or 180), see
        :func:`chain_states`.
    window_months:
        Performance window: the one-month matrix is chained this many times.
    min_count:
        Smoothing strength. A product's row for bucket k is
        ``(counts_k + min_count * pooled_share_k) / (n_k + min_count)``: a product with few
        accounts in bucket k borrows from the pooled (all products) row; ``0`` disables it.
    weight:
        ``"accounts"`` (share of accounts, a probability per account) or ``"balance"`` (the
        share of balances, the finance view).

    Fitted attributes: ``states_`` (default state last), ``pooled_matrix_`` (states x states),
    ``product_matrices_`` (product -> matrix), ``transition_counts_`` (product, from_bucket,
    to_bucket, accounts, balance as counted by :func:`rollrisk.models.roll_rates.roll_rate_matrix`),
    ``unobserved_states_`` (non-default states never seen leaving in training; they get a
    stay-put row, hence a default probability of 0).
    """

    def __init__(
        self,
        default_dpd: int = DEFAULT_DPD,
        window_months: int = 3,
        min_count: float = 50.0,
        weight: Literal["accounts", "balance"] = "accounts",
    ) -> None:
        self.default_dpd = default_dpd
        self.window_months = window_months
        self.min_count = min_count
        self.weight = weight

    def fit(
        self,
        statements: pl.DataFrame | pd.DataFrame,
        until: date,
        accounts: pl.DataFrame | pd.DataFrame | None = None,
    ) -> RollRateChainModel:
        """Estimate the one-month transition matrices from statements up to ``until``.

        ``statements`` needs ``account_id, cycle_end, dpd`` and ``product`` (or pass
        ``accounts`` with ``account_id, product`` to join it); ``balance`` when
        ``weight="balance"``. Only month pairs whose later ``cycle_end`` <= ``until`` are used
        (statements after ``until`` are dropped before pairing consecutive months).
        """
        if self.window_months < 1:
            raise ValueError(f"window_months must be at least 1, got {self.window_months}")
        if self.min_count < 0:
            raise ValueError(f"min_count must be >= 0, got {self.min_count}")
        if self.weight not in ("accounts", "balance"):
            raise ValueError(f"weight must be 'accounts' or 'balance', got {self.weight!r}")
        states = chain_states(self.default_dpd)
        table = _to_polars(statements, "statements")
        missing = [c for c in ("account_id", "cycle_end", "dpd") if c not in table.columns]
        if missing:
            raise ValueError(
                f"statements need columns account_id, cycle_end, dpd; missing {missing}"
            )
        if "product" not in table.columns:
            if accounts is None:
                raise ValueError(
                    "statements have no 'product' column: pass accounts=(account_id, product) "
                    "so transitions can be counted per product"
                )
            products = _to_polars(accounts, "accounts").select(
                pl.col("account_id").cast(pl.String), pl.col("product").cast(pl.String)
            )
            table = table.with_columns(pl.col("account_id").cast(pl.String)).join(
                products, on="account_id", how="left"
            )
        if "balance" not in table.columns:
            if self.weight == "balance":
                raise ValueError("weight='balance' needs a 'balance' column in statements")
            table = table.with_columns(pl.lit(1.0).alias("balance"))
        table = table.filter(pl.col("cycle_end") <= until).with_columns(
            pl.col("product").cast(pl.String).fill_null(ALL_PRODUCTS)
        )
        per_product = [
            roll_rate_matrix(part).select(
                pl.lit(product).alias("product"), "from_bucket", "to_bucket", "accounts", "balance"
            )
            for (product,), part in table.group_by("product", maintain_order=True)
        ]
        transitions = pl.concat(per_product) if per_product else pl.DataFrame()
        if transitions.is_empty():
            raise ValueError(
                f"no consecutive monthly statements end on or before {until}: nothing to fit"
            )
        state_of_bucket = {
            bucket: min(index, len(states) - 1) for index, bucket in enumerate(ROLL_RATE_BUCKETS)
        }
        n_states = len(states)
        pooled_counts = np.zeros((n_states, n_states))
        product_counts: dict[str, NDArray[np.float64]] = {}
        for product, from_bucket, to_bucket, amount in transitions.select(
            "product", "from_bucket", "to_bucket", self.weight
        ).iter_rows():
            counts = product_counts.setdefault(product, np.zeros((n_states, n_states)))
            cell = (state_of_bucket[from_bucket], state_of_bucket[to_bucket])
            counts[cell] += float(amount)
            pooled_counts[cell] += float(amount)
        pooled_matrix, unobserved = self._normalise(pooled_counts, prior=None)
        self.states_ = states
        self.transition_counts_ = transitions.sort("product")
        self.pooled_matrix_ = pooled_matrix
        self.unobserved_states_ = [states[index] for index in unobserved]
        self.product_matrices_ = {
            product: self._normalise(counts, prior=pooled_matrix)[0]
            for product, counts in sorted(product_counts.items())
        }
        return self

    def _normalise(
        self, counts: NDArray[np.float64], prior: NDArray[np.float64] | None
    ) -> tuple[NDArray[np.float64], list[int]]:
        """Row-normalise counts (shrunk toward ``prior``); the default row is absorbing."""
        n_states = counts.shape[0]
        matrix = np.zeros_like(counts)
        unobserved: list[int] = []
        for index in range(n_states - 1):
            row = counts[index]
            total = row.sum()
            if prior is not None:
                if total + self.min_count > 0:
                    matrix[index] = (row + self.min_count * prior[index]) / (total + self.min_count)
                else:  # min_count=0 and the product never left this bucket: use the pooled row
                    matrix[index] = prior[index]
            elif total > 0:
                matrix[index] = row / total
            else:
                matrix[index, index] = 1.0
                unobserved.append(index)
        matrix[-1, -1] = 1.0
        return matrix, unobserved

    def transition_matrix(self, product: str | None = None) -> pd.DataFrame:
        """One-month matrix (rows from, columns to) for ``product``; pooled when None/unknown."""
        _check_fitted(self, "pooled_matrix_")
        matrix = (
            self.product_matrices_.get(product, self.pooled_matrix_)
            if product
            else self.pooled_matrix_
        )
        return pd.DataFrame(matrix, index=self.states_, columns=self.states_)

    def window_default_probabilities(self) -> pd.DataFrame:
        """P(default within the window) per product (rows, plus 'pooled') and start bucket."""
        _check_fitted(self, "pooled_matrix_")
        rows = {"pooled": self._chained_default(self.pooled_matrix_)}
        for product, matrix in self.product_matrices_.items():
            rows[product] = self._chained_default(matrix)
        return pd.DataFrame(rows, index=self.states_).T

    def _chained_default(self, matrix: NDArray[np.float64]) -> NDArray[np.float64]:
        # the default state is absorbing, so being in it after n steps == reached it within n
        return np.linalg.matrix_power(matrix, self.window_months)[:, -1]

    def predict_proba(self, frame: pl.DataFrame | pd.DataFrame) -> NDArray[np.float64]:
        """P(default within ``window_months``) per row, 1-D.

        Needs ``start_bucket`` ("M1"/"M2"/"M3", mapped through its lowest DPD so it follows
        this model's ``default_dpd``) or ``dpd_current`` (used when present and not null);
        uses ``product`` when present (unknown products get the pooled matrix).
        """
        _check_fitted(self, "pooled_matrix_")
        table = _to_polars(frame, "frame")
        if "dpd_current" not in table.columns and "start_bucket" not in table.columns:
            raise ValueError(
                "predict_proba needs a 'start_bucket' (M1/M2/M3) or 'dpd_current' column; "
                f"frame has {table.columns}"
            )
        dpd = pl.lit(None, dtype=pl.Int64)
        if "start_bucket" in table.columns:
            unknown = set(table["start_bucket"].drop_nulls().unique().to_list()) - set(
                BUCKET_LOWEST_DPD
            )
            if unknown:
                raise ValueError(
                    f"start_bucket has unknown values {sorted(unknown)}; expected one of "
                    f"{sorted(BUCKET_LOWEST_DPD)}"
                )
            dpd = pl.col("start_bucket").replace_strict(
                BUCKET_LOWEST_DPD, default=None, return_dtype=pl.Int64
            )
        if "dpd_current" in table.columns:
            dpd = pl.coalesce(pl.col("dpd_current").cast(pl.Int64), dpd)
        starts = table.select(
            dpd.alias("dpd"),
            (
                pl.col("product").cast(pl.String)
                if "product" in table.columns
                else pl.lit(None, dtype=pl.String)
            ).alias("product"),
        )
        if starts["dpd"].null_count():
            first = starts["dpd"].is_null().arg_true()[0]
            raise ValueError(
                f"row {first}: no starting bucket (start_bucket and dpd_current are both missing)"
            )
        if (starts["dpd"] < 0).any():
            raise ValueError("dpd_current must be >= 0")
        states = starts.with_columns(dpd_bucket(pl.col("dpd")).alias("bucket"))
        products = list(self.product_matrices_)
        # one row of chained default probabilities per product, the pooled row last
        chained = np.vstack(
            [self._chained_default(self.product_matrices_[product]) for product in products]
            + [self._chained_default(self.pooled_matrix_)]
        )
        product_index = (
            states["product"]
            .replace_strict(
                {product: index for index, product in enumerate(products)},
                default=len(products),
                return_dtype=pl.Int64,
            )
            .to_numpy()
        )
        # buckets at or above default_dpd all land in the (last) default state
        state_of_bucket = {
            bucket: min(index, len(self.states_) - 1)
            for index, bucket in enumerate(ROLL_RATE_BUCKETS)
        }
        state_index = (
            states["bucket"].replace_strict(state_of_bucket, return_dtype=pl.Int64).to_numpy()
        )
        return chained[product_index, state_index]


# =========================================================================== WOE scorecard


@contextmanager
def _quiet_optbinning() -> Iterator[None]:
    """optbinning's own binning-table build trips a pandas dtype deprecation warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Setting an item of incompatible dtype")
        yield


class WoeScorecardModel:
    """WOE logistic scorecard: optimal binning per feature, then logistic regression on WOE.

    Parameters
    ----------
    feature_specs:
        Registry specs (``rollrisk.features.registry.FeatureSpec``) for the columns of ``X``;
        ``direction`` +1 forces an ascending bad rate across bins, -1 descending, 0 free;
        ``kind="categorical"`` bins the column as categorical. Columns without a spec are
        numeric with a free trend unless their dtype is not numeric.
    max_n_bins, min_bin_size:
        Passed to optbinning (bins per feature; smallest bin as a share of rows).
    regularization_c:
        Inverse L2 strength of the logistic regression (sklearn's ``C``).
    base_score, base_odds, points_to_double_odds:
        Points scaling of :meth:`scorecard_table`: ``base_score`` points at good:bad odds of
        ``base_odds``, and ``points_to_double_odds`` more points each time the odds double.

    Missing values get their own "Missing" bin with its empirical WOE (0 when training had no
    missing values in that feature). A column with no value at all in the training rows (a
    feature of an optional table the portfolio lacks) carries no evidence: it is left out and
    listed in ``excluded_features_``, and predicting does not need it. Fitted attributes:
    ``feature_names_`` (the columns scored), ``excluded_features_``, ``categorical_features_``,
    ``binning_process_``, ``logistic_``.
    """

    def __init__(
        self,
        feature_specs: Sequence[FeatureSpec] | None = None,
        max_n_bins: int = 6,
        min_bin_size: float = 0.05,
        regularization_c: float = 1.0,
        base_score: float = 600.0,
        base_odds: float = 50.0,
        points_to_double_odds: float = 20.0,
    ) -> None:
        self.feature_specs = feature_specs
        self.max_n_bins = max_n_bins
        self.min_bin_size = min_bin_size
        self.regularization_c = regularization_c
        self.base_score = base_score
        self.base_odds = base_odds
        self.points_to_double_odds = points_to_double_odds

    def _prepare(self, X: pd.DataFrame) -> pd.DataFrame:
        missing = [name for name in self.feature_names_ if name not in X.columns]
        if missing:
            raise ValueError(f"X is missing feature column(s) {missing}")
        prepared = {}
        for name in self.feature_names_:
            column = X[name]
            if name in self.categorical_features_:
                # categories as strings; missing stays NaN, which optbinning puts in "Missing"
                prepared[name] = column.astype(str).where(column.notna(), np.nan).astype(object)
            else:
                try:
                    prepared[name] = pd.to_numeric(column, errors="raise").astype(np.float64)
                except (TypeError, ValueError) as error:
                    raise ValueError(
                        f"feature {name!r} is numeric in this scorecard but holds non-numbers "
                        f"({error}); declare it kind='categorical' in the feature registry"
                    ) from error
        return pd.DataFrame(prepared, index=X.index)

    def fit(self, X: pd.DataFrame, y: ArrayLike) -> WoeScorecardModel:
        """Bin every column of ``X`` against the 0/1 label ``y``, then fit the regression."""
        if not isinstance(X, pd.DataFrame):
            raise TypeError(
                f"X must be a pandas DataFrame with named columns, got {type(X).__name__}"
            )
        labels = np.asarray(y)
        if labels.shape != (len(X),):
            raise ValueError(
                f"y must be 1-D with one label per row of X ({len(X)}), got shape {labels.shape}"
            )
        if not np.isin(labels, [0, 1]).all():
            raise ValueError("y must be binary (0/1)")
        if labels.min() == labels.max():
            raise ValueError(
                "y holds a single class: a scorecard needs both defaults and non-defaults"
            )
        specs = {spec.name: spec for spec in (self.feature_specs or ())}
        # optbinning cannot bin a column without a value (it fits a tree on zero rows)
        empty = X.isna().all()
        self.excluded_features_ = [str(name) for name in X.columns if empty[name]]
        self.feature_names_ = [str(name) for name in X.columns if not empty[name]]
        if not self.feature_names_:
            raise ValueError("every column of X is missing in every row: nothing to bin")
        self.categorical_features_ = [
            name
            for name in self.feature_names_
            if (name in specs and specs[name].kind == "categorical")
            or (name not in specs and not pd.api.types.is_numeric_dtype(X[name]))
        ]
        fit_params: dict[str, dict[str, object]] = {}
        for name in self.feature_names_:
            spec = specs.get(name)
            if name in self.categorical_features_ or spec is None or spec.direction == 0:
                continue
            fit_params[name] = {
                "monotonic_trend": "ascending" if spec.direction > 0 else "descending"
            }
        prepared = self._prepare(X)
        binning = BinningProcess(
            variable_names=self.feature_names_,
            categorical_variables=self.categorical_features_ or None,
            max_n_bins=self.max_n_bins,
            min_bin_size=self.min_bin_size,
            binning_fit_params=fit_params or None,
        )
        with _quiet_optbinning():
            binning.fit(prepared, labels.astype(np.int64))
        woe = self._woe(binning, prepared)
        logistic = LogisticRegression(C=self.regularization_c, max_iter=2000)
        logistic.fit(woe, labels)
        self.binning_process_ = binning
        self.logistic_ = logistic
        return self

    @staticmethod
    def _woe(binning: BinningProcess, prepared: pd.DataFrame) -> pd.DataFrame:
        return binning.transform(
            prepared, metric="woe", metric_missing="empirical", metric_special="empirical"
        )

    def predict_proba(self, X: pd.DataFrame) -> NDArray[np.float64]:
        """P(default) per row of ``X`` (1-D)."""
        _check_fitted(self, "logistic_")
        woe = self._woe(self.binning_process_, self._prepare(X))
        return self.logistic_.predict_proba(woe)[:, 1]

    def scorecard_table(self) -> pd.DataFrame:
        """The scorecard: one row per feature bin with WOE, coefficient and points.

        Columns ``feature, bin, count, event_rate, woe, iv, coefficient, points``. The score of
        an account is ``sum of its bins' points``; higher = safer (standard scorecard scaling:
        ``score = offset + factor * ln(good:bad odds)``, ``factor = pdo / ln 2``).
        Note optbinning's WOE is ln(share of goods / share of bads), so a riskier bin has a
        lower WOE and the fitted coefficients are usually negative.
        """
        _check_fitted(self, "logistic_")
        factor = self.points_to_double_odds / np.log(2.0)
        offset = self.base_score - factor * np.log(self.base_odds)
        intercept = float(self.logistic_.intercept_[0])
        n_features = len(self.feature_names_)
        rows = []
        for name, coefficient in zip(self.feature_names_, self.logistic_.coef_[0], strict=True):
            with _quiet_optbinning():
                table = self.binning_process_.get_binned_variable(name).binning_table.build()
            table = table.loc[table.index != "Totals"]
            for _, bin_row in table.iterrows():
                woe = float(bin_row["WoE"]) if bin_row["WoE"] != "" else 0.0
                rows.append(
                    {
                        "feature": name,
                        "bin": str(
                            list(bin_row["Bin"])
                            if isinstance(bin_row["Bin"], np.ndarray)
                            else bin_row["Bin"]
                        ),
                        "count": int(bin_row["Count"]),
                        "event_rate": float(bin_row["Event rate"])
                        if bin_row["Count"]
                        else float("nan"),
                        "woe": woe,
                        "iv": float(bin_row["IV"]),
                        "coefficient": float(coefficient),
                        # log-odds of bad = intercept + sum coef * woe; points add up to the
                        # score offset - factor * log-odds(bad), the intercept shared evenly
                        "points": (offset - factor * intercept) / n_features
                        - factor * coefficient * woe,
                    }
                )
        return pd.DataFrame(rows)

    def score_points(self, X: pd.DataFrame) -> NDArray[np.float64]:
        """Scorecard points per row (higher = safer), consistent with :meth:`predict_proba`."""
        probability = np.clip(self.predict_proba(X), 1e-15, 1 - 1e-15)
        factor = self.points_to_double_odds / np.log(2.0)
        offset = self.base_score - factor * np.log(self.base_odds)
        return offset + factor * np.log((1 - probability) / probability)
