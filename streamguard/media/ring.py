"""Fixed-capacity ring buffer over a numpy array.

Live streams append 20 ms at a time and read a multi-second window once per
hop; a ring keeps each append O(frame) instead of copying the whole window.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt

T = TypeVar("T", bound=np.generic)


class RingBuffer(Generic[T]):
    def __init__(self, capacity: int, dtype: type[T]) -> None:
        if capacity <= 0:
            raise ValueError("ring capacity must be positive")
        self._data: npt.NDArray[T] = np.zeros(capacity, dtype=dtype)
        self._capacity = capacity
        self._write = 0
        self.total_written = 0

    @property
    def capacity(self) -> int:
        return self._capacity

    def __len__(self) -> int:
        return min(self.total_written, self._capacity)

    def write(self, values: npt.NDArray[T]) -> None:
        n = len(values)
        if n >= self._capacity:
            self._data[:] = values[-self._capacity:]
            self._write = 0
        else:
            first = min(n, self._capacity - self._write)
            self._data[self._write:self._write + first] = values[:first]
            self._data[: n - first] = values[first:]
            self._write = (self._write + n) % self._capacity
        self.total_written += n

    def latest(self, n: int) -> npt.NDArray[T]:
        """The most recent ``n`` values in time order (fewer if not written yet)."""
        n = min(n, len(self))
        start = (self._write - n) % self._capacity
        if start + n <= self._capacity:
            return self._data[start:start + n].copy()
        return np.concatenate([self._data[start:], self._data[: self._write]])
