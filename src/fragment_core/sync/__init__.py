"""One sync of one source: plan (diff records against state), apply, write back."""
