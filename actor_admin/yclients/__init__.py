"""Talking to YClients: the marketplace client, ``user_data`` signatures, pacing, retries, the outbox
worker that delivers the activation callback, and a fake.

See docs/yclients.md for the facts this package is built on.
"""

from ._activation import activation_payload
from ._client import (
    ALREADY_INSTALLED_MESSAGE,
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
from ._fake import (
    FakeAnswer,
    FakeYClients,
    Fault,
    create_fake_yclients,
    create_standalone_app,
    make_blueprints,
    serve_fake_yclients,
)
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
    "ActivationResult",
    "ClientStatistics",
    "FakeAnswer",
    "FakeYClients",
    "Fault",
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
    "create_fake_yclients",
    "create_standalone_app",
    "decode_user_data",
    "make_blueprints",
    "parse_retry_after",
    "run_outbox_worker",
    "serve_fake_yclients",
    "sign_user_data",
    "user_id_from",
    "verify_user_data",
]
