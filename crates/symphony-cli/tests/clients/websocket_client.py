"""The chat WebSocket (`/v1/chat/ws`) with the `websockets` package (SYMPHONY_BASE_URL)."""

import json
import os
import unittest
import urllib.request

from websockets.sync.client import connect

BASE = os.environ["SYMPHONY_BASE_URL"]
URL = BASE.replace("http://", "ws://") + "/v1/chat/ws"
REQUEST = {
    "model": "smollm2",
    "messages": [{"role": "user", "content": "What is the capital of France?"}],
    "max_tokens": 12,
    "temperature": 0,
}


def over_http():
    req = urllib.request.Request(
        f"{BASE}/v1/chat/completions",
        data=json.dumps(REQUEST).encode(),
        headers={"content-type": "application/json"},
    )
    return json.load(urllib.request.urlopen(req))["choices"][0]["message"]["content"]


class WebSocket(unittest.TestCase):
    def test_two_requests_on_one_socket(self):
        expected = over_http()
        with connect(URL) as ws:
            for _ in range(2):
                ws.send(json.dumps(REQUEST))
                text, finish = "", None
                while True:
                    message = ws.recv(timeout=60)
                    if message == "[DONE]":
                        break
                    chunk = json.loads(message)
                    self.assertEqual(chunk["object"], "chat.completion.chunk")
                    choice = chunk["choices"][0]
                    text += choice["delta"].get("content") or ""
                    finish = choice["finish_reason"] or finish
                self.assertEqual(text, expected)
                self.assertEqual(finish, "length")

    def test_bad_request_gets_an_error_message_and_the_socket_stays_open(self):
        with connect(URL) as ws:
            ws.send(json.dumps({"model": "no-such-model", "messages": REQUEST["messages"]}))
            error = json.loads(ws.recv(timeout=30))
            self.assertEqual(error["error"]["status"], 404)
            ws.send("{not json")
            self.assertEqual(json.loads(ws.recv(timeout=30))["error"]["status"], 400)
            ws.send(json.dumps(REQUEST | {"max_tokens": 1}))
            self.assertIn("chat.completion.chunk", ws.recv(timeout=60))


if __name__ == "__main__":
    unittest.main(verbosity=2)
