"""Bearer tokens and TLS credentials for ``primserve.Client``.

Example::

    >>> channel = grpc.intercept_channel(grpc.insecure_channel("localhost:50051"),
    ...                                  BearerToken("s3cret"))

Why an interceptor rather than ``grpc.access_token_call_credentials``: gRPC sends call
credentials only over TLS, and primserve accepts tokens on plaintext ports too (behind a
TLS-terminating mesh); an interceptor adds ``authorization: Bearer <token>`` on both.
"""

import collections

import grpc

__all__ = ["BearerToken", "tls_credentials"]


class _CallDetails(
        collections.namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials",
                                                "wait_for_ready", "compression")),
        grpc.ClientCallDetails):
    pass


class BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                  grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds ``authorization: Bearer <token>`` to every call of the channel it intercepts."""

    def __init__(self, token):
        token = str(token).strip()
        if not token or any(c <= " " or c > "~" for c in token):
            raise ValueError("auth_token: expected visible ASCII without spaces or line breaks")
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, details):
        metadata = list(details.metadata or []) + [self._header]
        return _CallDetails(details.method, details.timeout, metadata, details.credentials,
                            getattr(details, "wait_for_ready", None), getattr(details, "compression", None))

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)


def _pem(value):
    return value.encode() if isinstance(value, str) else value


def tls_credentials(root_certificates=None, private_key=None, certificate_chain=None):
    """``grpc.ssl_channel_credentials`` from PEM bytes or str (None: system roots / no client cert)."""
    if (private_key is None) != (certificate_chain is None):
        raise ValueError("private_key and certificate_chain go together (a client certificate and its key)")
    return grpc.ssl_channel_credentials(_pem(root_certificates), _pem(private_key), _pem(certificate_chain))
