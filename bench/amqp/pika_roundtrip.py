#!/usr/bin/env python3
"""Publish / consume / confirm round trip through an AMQP 0-9-1 broker with pika (the Python client).

Checks that a stock client works unchanged against strata's broker (issue 6's acceptance item), and runs
the same against rabbitmq-server. Steps, each printed as it passes:

  1. connect (PLAIN, the given vhost) and open a channel in confirm mode;
  2. declare a direct exchange and a queue, bind them;
  3. publish N persistent messages with properties, mandatory, each confirmed by the broker;
  4. a mandatory publish with no route comes back (basic.return) and is still confirmed;
  5. the queue holds exactly N messages (passive declare);
  6. consume them with manual acks: bodies in order, properties intact, not redelivered;
  7. the queue is empty afterwards (basic.get), then delete queue and exchange, close cleanly.

Usage: pika_roundtrip.py [--host H] [--port P] [--user U] [--password P] [--vhost V] [--messages N]
Environment: AMQP_HOST, AMQP_PORT, AMQP_USER, AMQP_PASSWORD, AMQP_VHOST (flags win).
Exit status: 0 on success, 1 when a step fails, 2 when the broker cannot be reached or pika is missing.
"""

import argparse
import os
import sys
import time
import uuid

try:
    import pika
    from pika import exceptions as pika_errors
except ImportError:  # pragma: no cover - depends on the environment
    print("FAIL: the pika package is not installed (pip install pika, or use run-pika.sh)", file=sys.stderr)
    sys.exit(2)


class StepFailed(Exception):
    """A check that did not hold; the message says what was expected and what came back."""


def parse_args():
    env = os.environ
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default=env.get("AMQP_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(env.get("AMQP_PORT", "5672")))
    p.add_argument("--user", default=env.get("AMQP_USER", "guest"))
    p.add_argument("--password", default=env.get("AMQP_PASSWORD", "guest"))
    p.add_argument("--vhost", default=env.get("AMQP_VHOST", "/"))
    p.add_argument("--messages", type=int, default=100, help="messages in the round trip (default 100)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for deliveries (default 10)")
    return p.parse_args()


def ok(step):
    print(f"ok: {step}", flush=True)


def expect(condition, what):
    if not condition:
        raise StepFailed(what)


def run(args):
    params = pika.ConnectionParameters(
        host=args.host,
        port=args.port,
        virtual_host=args.vhost,
        credentials=pika.PlainCredentials(args.user, args.password),
        connection_attempts=1,
        socket_timeout=args.timeout,
        blocked_connection_timeout=args.timeout,
        heartbeat=30,
    )
    try:
        connection = pika.BlockingConnection(params)
    except pika_errors.AMQPError as e:
        print(f"FAIL: cannot open an AMQP connection to {args.host}:{args.port} vhost {args.vhost!r}: "
              f"{type(e).__name__}: {e}", file=sys.stderr)
        return 2
    # pika keeps connection.start's server properties on its internal connection object.
    server = getattr(getattr(connection, "_impl", None), "server_properties", None) or {}
    product = server.get("product", b"?")
    version = server.get("version", b"?")
    as_text = lambda v: v.decode() if isinstance(v, bytes) else str(v)
    ok(f"connected to {args.host}:{args.port} ({as_text(product)} {as_text(version)}), pika {pika.__version__}")

    tag = uuid.uuid4().hex[:12]
    exchange, queue, key = f"pika-rt-x-{tag}", f"pika-rt-q-{tag}", "round-trip"
    channel = connection.channel()
    channel.confirm_delivery()
    ok("channel open in confirm mode")
    try:
        channel.exchange_declare(exchange=exchange, exchange_type="direct", durable=False, auto_delete=False)
        declared = channel.queue_declare(queue=queue, durable=True, exclusive=False, auto_delete=False)
        expect(declared.method.queue == queue, f"queue.declare-ok named {declared.method.queue!r}, not {queue!r}")
        expect(declared.method.message_count == 0, f"a new queue holds {declared.method.message_count} messages")
        channel.queue_bind(queue=queue, exchange=exchange, routing_key=key)
        ok(f"declared exchange {exchange} (direct), queue {queue} (durable), bound with {key!r}")

        started = time.monotonic()
        for i in range(args.messages):
            props = pika.BasicProperties(
                content_type="application/octet-stream",
                delivery_mode=pika.DeliveryMode.Persistent,
                message_id=f"{tag}-{i}",
                correlation_id=tag,
                headers={"seq": i, "origin": "pika_roundtrip"},
            )
            try:
                channel.basic_publish(exchange, key, body=body_of(tag, i), properties=props, mandatory=True)
            except pika_errors.UnroutableError:
                raise StepFailed(f"message {i} came back unroutable although the queue is bound")
            except pika_errors.NackError:
                raise StepFailed(f"the broker nacked message {i}")
        ok(f"published {args.messages} persistent messages, each confirmed "
           f"({args.messages / max(time.monotonic() - started, 1e-9):.0f} msg/s)")

        try:
            channel.basic_publish(exchange, "no-such-route", body=b"lost", mandatory=True)
            raise StepFailed("a mandatory publish with no route was confirmed without a basic.return")
        except pika_errors.UnroutableError as e:
            expect(len(e.messages) == 1, f"{len(e.messages)} returned messages instead of 1")
            ok("an unroutable mandatory publish came back (basic.return) and was confirmed")

        depth = channel.queue_declare(queue=queue, passive=True).method.message_count
        expect(depth == args.messages, f"the queue holds {depth} messages, expected {args.messages}")
        ok(f"queue holds {depth} messages")

        received = 0
        last_tag = acked_tag = None
        for method, props, body in channel.consume(queue, auto_ack=False, inactivity_timeout=args.timeout):
            if method is None:
                raise StepFailed(f"no delivery within {args.timeout}s after {received} of {args.messages}")
            expect(body == body_of(tag, received), f"delivery {received} has body {body!r}")
            expect(not method.redelivered, f"delivery {received} is flagged redelivered")
            expect(props.message_id == f"{tag}-{received}", f"delivery {received} message_id {props.message_id!r}")
            expect(props.correlation_id == tag, f"delivery {received} correlation_id {props.correlation_id!r}")
            expect(props.delivery_mode == 2, f"delivery {received} delivery_mode {props.delivery_mode!r}")
            expect(props.content_type == "application/octet-stream",
                   f"delivery {received} content_type {props.content_type!r}")
            headers = props.headers or {}
            expect(headers.get("seq") == received and headers.get("origin") in ("pika_roundtrip", b"pika_roundtrip"),
                   f"delivery {received} headers {headers!r}")
            received += 1
            last_tag = method.delivery_tag
            if received % 10 == 0:
                channel.basic_ack(delivery_tag=last_tag, multiple=True)
                acked_tag = last_tag
            if received == args.messages:
                break
        if last_tag is not None and last_tag != acked_tag:
            channel.basic_ack(delivery_tag=last_tag, multiple=True)
        channel.cancel()
        ok(f"consumed {received} messages in order with properties intact, acked (multiple)")

        method, _, _ = channel.basic_get(queue, auto_ack=True)
        expect(method is None, "basic.get found a message in a queue that should be empty")
        depth = channel.queue_declare(queue=queue, passive=True).method.message_count
        expect(depth == 0, f"the queue still holds {depth} messages after every ack")
        ok("queue empty after the acks (basic.get-empty)")
    finally:
        if channel.is_open:
            try:
                channel.queue_delete(queue=queue)
                channel.exchange_delete(exchange=exchange)
            except pika_errors.AMQPError as e:
                print(f"warning: cleanup failed: {e!r}", file=sys.stderr)
    channel.close()
    connection.close()
    ok("deleted queue and exchange, closed channel and connection")
    return 0


def body_of(tag, i):
    return f"{tag}:{i:06d}:".encode() + bytes(range(32))


def main():
    args = parse_args()
    try:
        code = run(args)
    except StepFailed as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    except pika_errors.AMQPError as e:
        # Channel and connection closes carry the broker's reply code and text.
        print(f"FAIL: the broker closed the conversation: {type(e).__name__}: {e!r}", file=sys.stderr)
        return 1
    if code == 0:
        print("PASS: pika publish / consume / confirm round trip")
    return code


if __name__ == "__main__":
    sys.exit(main())
