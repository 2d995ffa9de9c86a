#!/usr/bin/env python3
"""A Discord bot's message path, instrumented for `notifyscope watch`.

It plays a bot without Discord: MESSAGES messages arrive one after another; every 5th is
written by a bot account and skipped by the filter, and the publish of every 7th raises
(the connection to PostgreSQL dropped). What it did with each message is told one of three
ways:

  --report json        notifyscope's JSON line on stdout or in --log-file:
                       {"stage": "received", "message_id": "...", ...}
  --report discordpy   nothing but discord.py's default log: a failed publish escapes
                       on_message and is logged as "Ignoring exception in on_message" with
                       its traceback, as discord.py does
  --report otlp        OpenTelemetry spans, exported over OTLP/HTTP to
                       OTEL_EXPORTER_OTLP_ENDPOINT (pip install opentelemetry-sdk
                       opentelemetry-exporter-otlp-proto-http)

With --database-url (a libpq connection string) and --channel, a message that is
published is a real NOTIFY and a row in TABLE, sent through psql, so that watch correlates
the bot's account with the database's.

    notifyscope watch --bot-log bot.log --channel events ... &
    python3 examples/instrumented_bot.py --report json --log-file bot.log
"""

import argparse
import json
import logging
import subprocess
import sys
import time


class ConnectionDoesNotExistError(Exception):
    """What asyncpg raises when the connection was closed under a query."""


# Named as asyncpg names it, so the traceback reads as a real one would.
ConnectionDoesNotExistError.__module__ = "asyncpg.exceptions"


class Message:
    def __init__(self, number, first_id, channel_id):
        self.number = number
        self.id = first_id + number
        self.channel_id = channel_id
        self.author_is_bot = number % 5 == 0
        self.content = f"message {number}"


class Database:
    """NOTIFY and the row of a published message, through one psql process."""

    def __init__(self, url, channel, table):
        self.channel = channel
        self.table = table
        self.psql = None
        if url:
            self.psql = subprocess.Popen(
                ["psql", url, "-q", "-X", "-v", "ON_ERROR_STOP=0"],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                text=True,
            )

    def publish(self, message):
        if message.number % 7 == 0:
            raise ConnectionDoesNotExistError("connection was closed in the middle of operation")
        if self.psql is None:
            return
        payload = json.dumps({"message_id": str(message.id), "content": message.content})
        self.psql.stdin.write(
            f"BEGIN; INSERT INTO {self.table} (message_id, content) "
            f"VALUES ({message.id}, {quote(message.content)}); "
            f"SELECT pg_notify({quote(self.channel)}, {quote(payload)}); COMMIT;\n"
        )
        self.psql.stdin.flush()

    def close(self):
        if self.psql is not None:
            self.psql.stdin.close()
            self.psql.wait()


def quote(text):
    return "'" + text.replace("'", "''") + "'"


class JsonReport:
    """notifyscope's documented line, one JSON object a line."""

    def __init__(self, out):
        self.out = out

    def line(self, stage, message, **fields):
        fields.update(stage=stage, message_id=str(message.id), channel_id=str(message.channel_id))
        self.out.write(json.dumps(fields) + "\n")
        self.out.flush()

    def on_message(self, message, database):
        self.line("received", message)
        if message.author_is_bot:
            self.line("skipped", message, reason="author is a bot")
            return
        try:
            database.publish(message)
        except Exception as e:
            # publish_event_safe: caught, but said.
            self.line("publish_failed", message, error=f"{type(e).__name__}: {e}")
            return
        self.line("published", message)


class DiscordPyLog:
    """What a bot says with nothing but discord.py's default logging."""

    def __init__(self, out):
        handler = logging.StreamHandler(out)
        handler.setFormatter(
            logging.Formatter(
                "[{asctime}] [{levelname:<8}] {name}: {message}", "%Y-%m-%d %H:%M:%S", style="{"
            )
        )
        logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
        self.client = logging.getLogger("discord.client")
        self.client.info("logging in using static token")

    def on_message(self, message, database):
        if message.author_is_bot:
            return
        try:
            database.publish(message)
        except Exception:
            # discord.py's Client.on_error: the exception ends here, in the log only.
            self.client.exception("Ignoring exception in on_message")


class OpenTelemetryReport:
    """Spans with the messaging conventions; the skip says its stage and reason."""

    def __init__(self):
        try:
            from opentelemetry import trace
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            sys.exit(
                "instrumented_bot.py: --report otlp needs: "
                "python3 -m pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-http"
            )
        self.provider = TracerProvider(resource=Resource.create({"service.name": "discord-bot"}))
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(self.provider)
        self.tracer = trace.get_tracer("discord-bot")

    def on_message(self, message, database):
        ids = {"messaging.system": "discord", "messaging.message.id": str(message.id)}
        with self.tracer.start_as_current_span(
            "on_message", attributes={**ids, "messaging.operation.type": "process"}
        ):
            if message.author_is_bot:
                with self.tracer.start_as_current_span("filter", attributes=ids) as span:
                    span.set_attribute("notifyscope.stage", "skipped")
                    span.set_attribute("notifyscope.skip_reason", "author is a bot")
                return
            try:
                # The span records the exception and its error status on the way out.
                with self.tracer.start_as_current_span(
                    "publish", attributes={**ids, "messaging.operation.type": "publish"}
                ):
                    database.publish(message)
            except ConnectionDoesNotExistError:
                pass

    def close(self):
        self.provider.shutdown()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", choices=["json", "discordpy", "otlp"], default="json")
    parser.add_argument("--messages", type=int, default=35)
    parser.add_argument("--first-id", type=int, default=1_300_000_000_000_000_000)
    parser.add_argument("--channel-id", type=int, default=1_200_000_000_000_000_001)
    parser.add_argument("--log-file", help="append the log here instead of stdout")
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between messages")
    parser.add_argument("--database-url")
    parser.add_argument("--channel", default="discord_events")
    parser.add_argument("--table", default="discord_messages")
    args = parser.parse_args()

    out = open(args.log_file, "a", encoding="utf-8") if args.log_file else sys.stdout
    if args.report == "json":
        bot = JsonReport(out)
    elif args.report == "discordpy":
        bot = DiscordPyLog(out)
    else:
        bot = OpenTelemetryReport()
    database = Database(args.database_url, args.channel, args.table)
    try:
        for number in range(1, args.messages + 1):
            bot.on_message(Message(number, args.first_id, args.channel_id), database)
            time.sleep(args.interval)
    finally:
        database.close()
        if hasattr(bot, "close"):
            bot.close()
        out.flush()


if __name__ == "__main__":
    main()
