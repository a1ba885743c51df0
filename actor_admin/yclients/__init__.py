"""Talking to YClients: the marketplace client, ``user_data`` signatures, pacing, the outbox
worker that delivers the activation callback with retries, and a fake.

See reference/yclients-marketplace.md for the facts this package is built on.
"""

from ._activation import WEBHOOK_PATH, activation_payload
from ._client import (
    ALREADY_INSTALLED_MESSAGE,
    ActivationResult,
    ClientStatistics,
    InstallationStatus,
    Outcome,
    PaymentReceipt,
    SalonsPage,
    YClientsClient,
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
    "WEBHOOK_PATH",
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
    "create_fake_yclients",
    "create_standalone_app",
    "make_blueprints",
    "run_outbox_worker",
    "serve_fake_yclients",
    "sign_user_data",
    "user_id_from",
    "verify_user_data",
]
