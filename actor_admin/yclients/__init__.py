"""Talking to YClients: the marketplace client, ``user_data`` signatures, pacing, retries, and the
outbox worker that delivers the activation callback. The fake marketplace is a double and lives in
:mod:`actor_admin.doubles.yclients`.

See reference/yclients-marketplace.md for the facts this package is built on.
"""

from ._activation import activation_payload
from ._client import (
    ALREADY_INSTALLED_MESSAGE,
    PAYMENT_TIME_FORMAT,
    ActivationResult,
    ClientStatistics,
    InstallationStatus,
    Outcome,
    PaymentReceipt,
    SalonsPage,
    YClientsClient,
    parse_retry_after,
)
from ._errors import FinalError, RetryableError, YClientsError
from ._outbox import DEADLINE_PASSED, OutboxWorker, OutboxWorkerStatistics, run_outbox_worker
from ._retry import backoff_delay, call_with_retries
from ._signature import (
    SignatureError,
    SignatureFailure,
    decode_user_data,
    sign_user_data,
    user_id_from,
    verify_user_data,
)
from ._throttle import NoThrottle, SharedThrottle, Throttle, TokenBucket, TokenBucketStatistics

__all__ = [
    "ALREADY_INSTALLED_MESSAGE",
    "DEADLINE_PASSED",
    "PAYMENT_TIME_FORMAT",
    "ActivationResult",
    "ClientStatistics",
    "FinalError",
    "InstallationStatus",
    "NoThrottle",
    "OutboxWorker",
    "OutboxWorkerStatistics",
    "Outcome",
    "PaymentReceipt",
    "RetryableError",
    "SalonsPage",
    "SharedThrottle",
    "SignatureError",
    "SignatureFailure",
    "Throttle",
    "TokenBucket",
    "TokenBucketStatistics",
    "YClientsClient",
    "YClientsError",
    "activation_payload",
    "backoff_delay",
    "call_with_retries",
    "decode_user_data",
    "parse_retry_after",
    "run_outbox_worker",
    "sign_user_data",
    "user_id_from",
    "verify_user_data",
]
