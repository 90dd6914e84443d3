"""`python -m gateway --host 127.0.0.1 --port 8080`: serve the gateway with uvicorn on uvloop."""

from __future__ import annotations

import argparse

import uvicorn

from infra.settings.gateway import GatewaySettings


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m gateway", description="genloom HTTP gateway")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="TCP port (default 8080)")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    settings = GatewaySettings()
    uvicorn.run(
        "gateway.app:serve_app", factory=True, host=args.host, port=args.port,
        loop="uvloop", http="httptools", ws="websockets-sansio", log_level=args.log_level, proxy_headers=False,
        ws_max_size=settings.ws_max_frame_bytes,
    )


if __name__ == "__main__":
    main()
