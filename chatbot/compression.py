"""Pages and other text responses compressed (brotli or gzip, from ``Accept-Encoding``).

An ``after_request`` hook, so it works the same under ``flask run``, the test client and gunicorn.
It compresses a response only when all of this holds:

- its body is already whole in memory. A streamed response is never touched: the exports, and
  the reply's ``text/event-stream``, whose events must leave as they are written. Compressing it
  with a flush per event would work (a 60-word reply's stream: 9.7 KB as it is, 1.9 KB gzipped
  event by event; a long Markdown one 21 KB and 2.7 KB), but a stream's pace is the model's, not
  the network's, and it would cost a compressor per open stream (zlib's default is 256 KB, and a
  gevent worker holds up to 2,000 connections) and another generator around the stream's own
  close and disconnect handling;
- it is text (``assets.COMPRESSIBLE``) of at least ``MIN_BYTES`` (below that the encoding's own
  overhead eats the gain: most htmx partials);
- it is a 2xx other than 204/206, or an error page, and carries no ``Content-Encoding`` already
  (static files are encoded by ``assets``).

HEAD is answered as GET would be (the same headers, the compressed length). ``Vary:
Accept-Encoding`` goes on every response that would have been compressed for another client.
"""

from __future__ import annotations

from flask import Flask, request
from werkzeug.wrappers import Response

from .assets import COMPRESSIBLE, choose_encoding, compress

MIN_BYTES = 1024


def compress_response(response: Response) -> Response:
    if response.is_streamed or response.direct_passthrough:
        return response
    status = response.status_code
    if status < 200 or status in (204, 206, 304):
        return response
    if response.mimetype not in COMPRESSIBLE or "Content-Encoding" in response.headers:
        return response
    body = response.get_data()
    if len(body) < MIN_BYTES:
        return response
    response.vary.add("Accept-Encoding")
    coding = choose_encoding(request.accept_encodings)
    if coding is None:
        return response
    response.set_data(compress(body, coding, fast=True))
    response.content_encoding = coding
    etag, weak = response.get_etag()
    if etag and not weak:  # (a strong validator names these bytes: another one for the encoded)
        response.set_etag(f"{etag}-{coding}")
    return response


def init_app(app: Flask) -> None:
    # after_request hooks run last-registered first: registered before all but the request log
    # (create_app's order), this one runs after the others, on the body as they left it, and the
    # logged duration includes it.
    app.after_request(compress_response)
