"""Logistic regression and the model store: numpy in, numpy out.

``Client`` gets these methods from ``LogisticMethods``; ``LogisticRegression`` is a small
scikit-learn-like estimator over them.

Example::

    >>> import numpy as np, primserve
    >>> X = np.array([[1, 2], [2, 0.5], [0, 1], [3, 3], [2.5, 1], [1.5, 2.5]])
    >>> y = np.array([0, 0, 0, 1, 1, 1])
    >>> with primserve.Client("localhost:50051") as c:
    ...     model, report = c.fit(X, y, model_name="toy")        # the closed form (MATH.md 5)
    ...     proba, labels = c.predict([[2.0, 2.0]], model_name="toy")
    >>> round(float(proba[0, 1]), 6), labels
    (0.839365, array([1]))
    >>> clf = primserve.LogisticRegression("localhost:50051").fit(X, y)
    >>> clf.predict_proba([[2.0, 2.0]]).round(6), clf.predict([[2.0, 2.0]])
    (array([[0.160635, 0.839365]], dtype=float32), array([1]))
"""

import concurrent.futures

import numpy as np

from primserve.tensors import as_enum, as_integer, from_tensor, to_tensor
from primserve.v1 import logistic_regression_pb2 as lr_pb2
from primserve.v1 import logistic_regression_pb2_grpc as lr_grpc
from primserve.v1 import models_pb2
from primserve.v1 import models_pb2_grpc

__all__ = ["LogisticMethods", "LogisticRegression"]

_COVARIANCES = {"pooled_within": lr_pb2.COVARIANCE_POOLED_WITHIN, "total": lr_pb2.COVARIANCE_TOTAL}
_SOLVERS = {"analytic": lr_pb2.SOLVER_ANALYTIC, "maximum_likelihood": lr_pb2.SOLVER_MAXIMUM_LIKELIHOOD}
_MODEL_KINDS = {"logistic": models_pb2.MODEL_KIND_LOGISTIC,
                "discriminator": models_pb2.MODEL_KIND_DISCRIMINATOR}
_KIND_NAMES = {value: name for name, value in _MODEL_KINDS.items()}



def _labels(labels):
    """A list of Python ints from integer labels (integral floats accepted).

    Values the wire's int64 cannot hold (uint64 >= 2**63, huge floats) are refused here rather
    than wrapped to negative numbers.
    """
    a = np.asarray(labels).reshape(-1)
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a) | (a != np.round(a)) | (a < -2.0**63) | (a >= 2.0**63)
        if np.any(bad):
            i = int(np.argmax(bad))
            raise ValueError(f"labels must be integers 0..K-1, got {a[i]!r} at index {i}")
    elif a.dtype.kind == "u" and a.dtype.itemsize == 8:
        above = a > np.uint64(2**63 - 1)  # A uint64 operand: numpy 1 compares uint64 and int as float64.
        if np.any(above):
            i = int(np.argmax(above))
            raise ValueError(f"labels must be integers 0..K-1, got {int(a[i])} at index {i} "
                             "(above the int64 range of the wire)")
    elif a.dtype.kind not in "iub":
        raise TypeError(f"labels must be integers 0..K-1, got dtype {a.dtype}")
    return a.astype(np.int64).tolist()


def _features(features):
    a = np.asarray(features)
    if a.ndim == 1:
        a = a.reshape(-1, 1)
    return to_tensor(a)


def _report(report):
    return {field.name: getattr(report, field.name) for field in report.DESCRIPTOR.fields}


def _model(model):
    """A LogisticModel message as a dict of numpy arrays."""
    return {"weights": from_tensor(model.weights), "bias": from_tensor(model.bias),
            "priors": np.asarray(model.priors, dtype=np.float64)}


def _model_message(model):
    """A LogisticModel message from a dict with weights [K, d], bias [K] (and optional priors)."""
    return lr_pb2.LogisticModel(weights=to_tensor(model["weights"]), bias=to_tensor(model["bias"]),
                                priors=np.asarray(model.get("priors", []), np.float64).reshape(-1).tolist())


def _info(info):
    return {"name": info.name, "kind": _KIND_NAMES.get(info.kind, str(info.kind)),
            "file_bytes": info.file_bytes, "created_unix_seconds": info.created_unix_seconds,
            "num_features": info.num_features, "num_classes": info.num_classes,
            "input_shape": list(info.input_shape)}


class LogisticMethods:
    """The LogisticRegression and Models calls of ``primserve.Client`` (see its docs).

    Models are dicts ``{"weights": float32 [K, d], "bias": float32 [K], "priors": float64 [K]}``
    with p(c | x) = softmax(x @ weights.T + bias); reports are dicts of the ``FitReport`` fields
    (``train_accuracy``, ``log_loss``, ``samples``, ``seconds``, and for maximum likelihood
    ``iterations``, ``gradient_norm``, ``converged``, ``solver_message``).
    """

    @property
    def _logistic(self):
        stub = self.__dict__.get("_logistic_stub")
        if stub is None:
            stub = self.__dict__["_logistic_stub"] = lr_grpc.LogisticRegressionStub(self._channel)
        return stub

    @property
    def _models(self):
        stub = self.__dict__.get("_models_stub")
        if stub is None:
            stub = self.__dict__["_models_stub"] = models_pb2_grpc.ModelsStub(self._channel)
        return stub

    @staticmethod
    def _fit_options(num_classes=0, covariance="pooled_within", ridge=0.0, solver="analytic", l2=0.0,
                     max_iterations=0, gradient_tolerance=0.0, model_name=None):
        solver_value = as_enum(_SOLVERS, solver, "solver")
        return lr_pb2.FitRequest(
            num_classes=as_integer(num_classes, "num_classes"),
            # The covariance belongs to the analytic solver; the server rejects it with the other.
            covariance=(as_enum(_COVARIANCES, covariance, "covariance")
                        if solver_value != lr_pb2.SOLVER_MAXIMUM_LIKELIHOOD else 0),
            ridge=float(ridge), solver=solver_value, l2=float(l2),
            max_iterations=as_integer(max_iterations, "max_iterations"),
            gradient_tolerance=float(gradient_tolerance), model_name=model_name or "")

    def fit(self, features, labels, num_classes=0, covariance="pooled_within", ridge=0.0,
            solver="analytic", l2=0.0, max_iterations=0, gradient_tolerance=0.0, model_name=None,
            timeout=None):
        """Fits ``features`` [N, d] with integer ``labels`` (N values in 0..K-1).

        ``solver`` ``'analytic'`` (Su's closed form; ``covariance`` ``'pooled_within'`` or
        ``'total'``, optional ``ridge``) or ``'maximum_likelihood'`` (L-BFGS with ``l2``,
        ``max_iterations``, ``gradient_tolerance``). ``num_classes`` 0 infers K. With
        ``model_name`` the server also stores the model. Returns ``(model, report)``.

        Example::

            >>> model, report = c.fit(X, y)
            >>> model["weights"].shape, report["samples"]
            ((2, 2), 6.0)
        """
        request = self._fit_options(num_classes, covariance, ridge, solver, l2, max_iterations,
                                    gradient_tolerance, model_name)
        request.features.CopyFrom(_features(features))
        request.labels.extend(_labels(labels))
        response = self._call(self._logistic.Fit, request, timeout)
        return _model(response.model), _report(response.report)

    def fit_stream(self, chunks, num_classes=0, covariance="pooled_within", ridge=0.0, model_name=None,
                   timeout=None):
        """The analytic fit over an iterable of ``(features, labels)`` chunks (FitStream).

        Chunks are converted and sent one at a time, so a generator streams data of any size
        with bounded memory on both sides. The report's accuracy and log-loss are NaN. An
        exception raised by ``chunks`` (or converting one) cancels the call, so nothing is
        fitted or stored, and propagates unchanged; a stream of no rows raises ``ValueError``.

        Example::

            >>> chunks = ((X[i:i + 2], y[i:i + 2]) for i in range(0, len(X), 2))
            >>> model, report = c.fit_stream(chunks)
        """
        options = self._fit_options(num_classes, covariance, ridge, "analytic", model_name=model_name)

        def messages():
            count = rows = 0
            for features, labels in chunks:
                message = options if count == 0 else lr_pb2.FitRequest()
                message.features.CopyFrom(_features(features))
                message.labels.extend(_labels(labels))
                count += 1
                shape = message.features.shape
                rows += max(shape[0] if shape else 1, len(message.labels))
                yield message
            if rows == 0:  # Raised inside the stream: the call is cancelled, not fitted.
                raise ValueError("fit_stream: the stream held no rows "
                                 + (f"({count} chunks, every one empty)" if count else "(no chunks)"))

        response = self._call_stream(self._logistic.FitStream, messages(), timeout)
        return _model(response.model), _report(response.report)

    def compute_statistics(self, features, labels, num_classes=0, timeout=None):
        """The additive sufficient statistics of one shard (a ``primserve.v1.Statistics``)."""
        request = lr_pb2.ComputeStatisticsRequest(features=_features(features), labels=_labels(labels),
                                                  num_classes=as_integer(num_classes, "num_classes"))
        return self._call(self._logistic.ComputeStatistics, request, timeout).statistics

    def fit_from_statistics(self, statistics, num_classes=0, covariance="pooled_within", ridge=0.0,
                            model_name=None, timeout=None):
        """The analytic fit of several shards' statistics, merged exactly: ``(model, report)``."""
        request = lr_pb2.FitFromStatisticsRequest(
            statistics=list(statistics), num_classes=as_integer(num_classes, "num_classes"),
            covariance=as_enum(_COVARIANCES, covariance, "covariance"), ridge=float(ridge),
            model_name=model_name or "")
        response = self._call(self._logistic.FitFromStatistics, request, timeout)
        return _model(response.model), _report(response.report)

    def fit_sharded(self, features, labels, num_shards, num_classes=0, covariance="pooled_within",
                    ridge=0.0, model_name=None, timeout=None):
        """Splits the rows into ``num_shards`` shards, computes their statistics concurrently
        (with a ``dns:///`` or ``ipv4:a,b,c`` address the channel balances them round-robin over
        the replicas) and fits from the merged statistics: the same model as ``fit``.

        Example::

            >>> with primserve.Client("ipv4:10.0.0.1:50051,10.0.0.2:50051") as many:
            ...     model, report = many.fit_sharded(X, y, num_shards=4)
        """
        num_shards = as_integer(num_shards, "num_shards", minimum=1)
        x = np.asarray(features)
        y = np.asarray(labels).reshape(-1)
        bounds = np.linspace(0, len(x), num_shards + 1).astype(int)
        with concurrent.futures.ThreadPoolExecutor(max_workers=num_shards) as pool:
            futures = [pool.submit(self.compute_statistics, x[a:b], y[a:b], num_classes, timeout)
                       for a, b in zip(bounds[:-1], bounds[1:])]
            statistics = [f.result() for f in futures]
        return self.fit_from_statistics(statistics, num_classes, covariance, ridge, model_name, timeout)

    def predict(self, features, model_name=None, model=None, timeout=None):
        """``(probabilities float32 [M, K], labels int64 [M])`` of a stored or inline model.

        Give exactly one of ``model_name`` (a stored model) or ``model`` (a dict as returned by
        ``fit``). Example::

            >>> proba, labels = c.predict([[2.0, 2.0]], model_name="toy")
        """
        request = lr_pb2.PredictRequest(model_name=model_name or "", features=_features(features))
        if model is not None:
            request.model.CopyFrom(_model_message(model))
        response = self._call(self._logistic.Predict, request, timeout)
        return from_tensor(response.probabilities), np.asarray(response.labels, dtype=np.int64)

    def list_models(self, kind=None, timeout=None):
        """Stored models as dicts (name, kind, file_bytes, created_unix_seconds, num_features,
        num_classes, input_shape: a discriminator's per-sample shape), sorted by name. Files the
        server could not load are in ``unreadable``: ``list_models()`` returns
        ``(models, unreadable)`` with ``unreadable`` a list of ``(file, reason)``."""
        request = models_pb2.ListRequest(kind=0 if kind is None else as_enum(_MODEL_KINDS, kind, "kind"))
        response = self._call(self._models.List, request, timeout)
        return ([_info(info) for info in response.models],
                [(u.file, u.reason) for u in response.unreadable])

    def get_model(self, name, timeout=None):
        """``(info, model)`` of a stored model (model: a dict as from ``fit``; for a discriminator,
        its ``primserve.v1.Network`` message)."""
        response = self._call(self._models.Get, models_pb2.GetRequest(name=name), timeout)
        model = _model(response.logistic) if response.HasField("logistic") else None
        if response.HasField("discriminator"):
            model = response.discriminator
        return _info(response.info), model

    def delete_model(self, name, timeout=None):
        """Deletes a stored model (``Error`` with NOT_FOUND if there is none)."""
        self._call(self._models.Delete, models_pb2.DeleteRequest(name=name), timeout)


class LogisticRegression:
    """A scikit-learn-like estimator over a primserve server.

    ``server`` is a ``primserve.Client`` or an address. The labels may be any sortable values
    (``classes_`` holds them, as in scikit-learn); the server sees their indices. After ``fit``:
    ``coef_`` [K, d] and ``intercept_`` [K] (K rows also for two classes, unlike scikit-learn's
    single row; softmax weights are defined up to a shared shift), ``priors_``, ``report_``.
    ``chunk_rows`` > 0 streams the fit (FitStream); ``model_name`` stores it on the server.

    Example::

        >>> clf = primserve.LogisticRegression("localhost:50051", covariance="total").fit(X, y)
        >>> clf.predict(X_test), clf.score(X_test, y_test)
    """

    def __init__(self, server="localhost:50051", covariance="pooled_within", ridge=0.0,
                 solver="analytic", l2=0.0, max_iterations=0, gradient_tolerance=0.0,
                 model_name=None, chunk_rows=0, timeout=None):
        self.server = server
        self.covariance = covariance
        self.ridge = ridge
        self.solver = solver
        self.l2 = l2
        self.max_iterations = max_iterations
        self.gradient_tolerance = gradient_tolerance
        self.model_name = model_name
        self.chunk_rows = chunk_rows
        self.timeout = timeout

    def _client(self):
        if isinstance(self.server, LogisticMethods):
            return self.server, False
        from primserve.client import Client  # Not at import time: client.py imports this module.
        return Client(self.server, timeout=self.timeout), True

    def fit(self, X, y):
        X = np.asarray(X, dtype=np.float32)
        self.classes_, encoded = np.unique(np.asarray(y).reshape(-1), return_inverse=True)
        rows = as_integer(0 if self.chunk_rows is None else self.chunk_rows, "chunk_rows", minimum=0)
        client, owned = self._client()
        try:
            if rows:
                if self.solver != "analytic":
                    raise ValueError("chunk_rows streams the analytic fit only")
                chunks = ((X[i:i + rows], encoded[i:i + rows]) for i in range(0, len(X), rows))
                model, report = client.fit_stream(chunks, len(self.classes_), self.covariance, self.ridge,
                                                  self.model_name, self.timeout)
            else:
                model, report = client.fit(X, encoded, len(self.classes_), self.covariance, self.ridge,
                                           self.solver, self.l2, self.max_iterations,
                                           self.gradient_tolerance, self.model_name, self.timeout)
        finally:
            if owned:
                client.close()
        self.model_ = model
        self.coef_, self.intercept_, self.priors_ = model["weights"], model["bias"], model["priors"]
        self.report_ = report
        self.n_features_in_ = X.shape[1] if X.ndim == 2 else 1
        return self

    def predict_proba(self, X):
        """float32 [M, K] class probabilities, columns in the order of ``classes_``."""
        client, owned = self._client()
        try:
            probabilities, _ = client.predict(X, model=self.model_, timeout=self.timeout)
        finally:
            if owned:
                client.close()
        return probabilities

    def predict(self, X):
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def score(self, X, y):
        """Mean accuracy on ``X``, ``y``."""
        return float(np.mean(self.predict(X) == np.asarray(y).reshape(-1)))
