"""fragment-stripe: Stripe Radar reviews (``stripe``) and early fraud warnings
(``stripe-efw``) as Fragment tasks, with write-back."""

from fragment_stripe.connector import ReviewsConnector, WarningsConnector

__all__ = ["ReviewsConnector", "WarningsConnector"]
