"""Token buckets for Route 53's API limits: requests per second and change tokens."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    rate: float  # tokens added per second
    capacity: float  # burst
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    tokens: float = field(init=False)
    _last: float = field(init=False)

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.capacity <= 0:
            raise ValueError("token bucket rate and capacity must be positive")
        self.tokens = self.capacity
        self._last = self.clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self._last) * self.rate)
        self._last = now

    def remaining(self) -> float:
        self._refill()
        return self.tokens

    def acquire(self, amount: float) -> float:
        """Take `amount` tokens, sleeping until they exist. Returns seconds waited."""
        if amount > self.capacity:
            raise ValueError(f"asked for {amount} tokens, more than the burst of {self.capacity}")
        waited = 0.0
        self._refill()
        while self.tokens < amount:
            pause = (amount - self.tokens) / self.rate
            self.sleep(pause)
            waited += pause
            self._refill()
        self.tokens -= amount
        return waited


@dataclass
class ApiBudget:
    """Route 53 defaults: ~10 requests/s per account (older docs: 5); change tokens burst 1,500,
    refilled at 100/s (CREATE and DELETE cost 1, UPSERT 2)."""

    requests: TokenBucket
    change_tokens: TokenBucket

    @classmethod
    def route53(cls, requests_per_s: float = 10.0, token_burst: float = 1500.0, tokens_per_s: float = 100.0,
                clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> ApiBudget:
        return cls(TokenBucket(requests_per_s, max(1.0, requests_per_s), clock, sleep),
                   TokenBucket(tokens_per_s, token_burst, clock, sleep))
