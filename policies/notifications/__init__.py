"""Notifications: an in-app inbox per principal, and webhook and e-mail delivery from an outbox.

A change that people must hear about (a request filed or decided, a grant revoked, a version
deprecated) writes its notification in its own transaction (`service.py`); grant expiry and
review dates are found by `mesh notifications scan` (`scan.py`). Webhook and SMTP deliveries
leave after commit from the `notification_delivery` outbox, retried with backoff
(`delivery.py`), so an outage never fails the change and never loses a notification.
"""
