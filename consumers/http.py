"""The HTTP client side shared by the webhook, CAP and SMS-gateway senders."""

from __future__ import annotations

import aiohttp

from consumers.dispatcher import DeliveryError


class HttpClient:
    """One session per sender; 2xx is delivered, 4xx (but 408 and 429) is final."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def post(self, url: str, data: bytes, headers: dict[str, str], what: str = "HTTP") -> int:
        assert self._http is not None, "start() first"
        try:
            async with self._http.post(url, data=data, headers=headers) as resp:
                await resp.read()
                if 200 <= resp.status < 300:
                    return resp.status
                final = 400 <= resp.status < 500 and resp.status not in (408, 429)
                raise DeliveryError(f"{what} {resp.status}", resp.status, retryable=not final)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
