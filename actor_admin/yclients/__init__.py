"""Talking to YClients: the marketplace client, ``user_data`` signatures, pacing, and the outbox
worker that delivers the activation callback with retries. The fake marketplace is a double and
lives in :mod:`actor_admin.doubles.yclients`.

See docs/yclients.md for the facts this package is built on.
"""

from ._activation import WEBHOOK_PATH, activation_payload
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
)
from ._errors import FinalError, RetryableError, YClientsError
from ._outbox import DEADLINE_PASSED, OutboxStore, OutboxWorker, OutboxWorkerStatistics, run_outbox_worker
from ._signature import (
    SignatureError,
    SignatureFailure,
    sign_user_data,
    user_id_from,
    verify_user_data,
)
from ._throttle import NoThrottle, SharedThrottle, Throttle, TokenBucket, TokenBucketStatistics

__all__ = [
    "ALREADY_INSTALLED_MESSAGE",
    "DEADLINE_PASSED",
    "PAYMENT_TIME_FORMAT",
    "WEBHOOK_PATH",
    "ActivationResult",
    "ClientStatistics",
    "FinalError",
    "InstallationStatus",
    "NoThrottle",
    "OutboxStore",
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
    "run_outbox_worker",
    "sign_user_data",
    "user_id_from",
    "verify_user_data",
]
