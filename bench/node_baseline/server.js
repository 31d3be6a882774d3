// The Node.js baseline of bench/ingest.py: a minimal Express + pg server taking one event per request.
//
// Parse the JSON body, one INSERT into the inbox (a pool of 10 connections), answer 202 once it is
// committed. No key check, no envelope check, no idempotency: the same floor as bench/minimal_urls.py.
// The benchmark starts it with PORT, DATABASE_URL and BENCH_STREAM_ID set.
"use strict";

const crypto = require("node:crypto");
const express = require("express");
const { Pool } = require("pg");

const port = Number(process.env.PORT || 8099);
const streamId = Number(process.env.BENCH_STREAM_ID || 1);
const pool = new Pool({ connectionString: process.env.DATABASE_URL, max: 10 });

const INSERT_SQL = `
INSERT INTO ingestion_inbox
    (stream_id, event_id, type, event_time, received_at, user_id, anonymous_id,
     session_id, payload, context, flags, attempts, next_attempt_at, last_error)
VALUES ($1, $2, $3, $4::timestamptz, $5, $6, $7, $8, $9::jsonb, $10::jsonb, '{}', 0, $5, '')`;

const app = express();
app.disable("x-powered-by");
app.disable("etag");
app.use(express.json({ limit: "1mb" }));

app.post("/api/v1/streams/:slug/events", async (req, res) => {
  const event = req.body || {};
  const receivedAt = new Date();
  const eventId = event.event_id || crypto.randomUUID();
  try {
    await pool.query({
      name: "inbox-insert",
      text: INSERT_SQL,
      values: [
        streamId,
        eventId,
        event.type,
        event.timestamp || receivedAt,
        receivedAt,
        event.user_id ?? null,
        event.anonymous_id ?? null,
        event.session_id ?? null,
        JSON.stringify(event.payload || {}),
        JSON.stringify(event.context || {}),
      ],
    });
  } catch (err) {
    res.status(500).json({ error: { code: "internal", message: String(err.message) } });
    return;
  }
  res.status(202).json({ event_id: eventId, status: "accepted" });
});

const server = app.listen(port, "127.0.0.1");
server.keepAliveTimeout = 75000;
const stop = () => server.close(() => pool.end().then(() => process.exit(0)));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
