"""The official A2A SDK (a2a-sdk) as the client of a Symphony agent over A2A 1.0 (JSON-RPC).

SYMPHONY_BASE_URL is the server; SYMPHONY_A2A_AGENT the agent's name. The agent is asked
to say a word, once without streaming and once streaming; the errors are read from the
raw JSON-RPC answers, so their codes are the ones the protocol names.
"""

import asyncio
import os
import unittest
import uuid

import httpx
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.helpers import get_artifact_text
from a2a.types.a2a_pb2 import Message, Part, Role, SendMessageRequest, TaskState

BASE = os.environ["SYMPHONY_BASE_URL"]
AGENT = os.environ["SYMPHONY_A2A_AGENT"]
AGENT_URL = f"{BASE}/a2a/{AGENT}"
QUESTION = "Reply with the single word: apple"


def ask(text):
    return SendMessageRequest(
        message=Message(message_id=str(uuid.uuid4()), role=Role.ROLE_USER, parts=[Part(text=text)])
    )


def rpc(method, params):
    body = {"jsonrpc": "2.0", "id": 7, "method": method, "params": params}
    answer = httpx.post(AGENT_URL, json=body, headers={"A2A-Version": "1.0"}, timeout=300)
    assert answer.status_code == 200, answer.text
    return answer.json()


class A2aClient(unittest.TestCase):
    def test_card_send_and_stream(self):
        asyncio.run(self.conversation())

    async def conversation(self):
        async with httpx.AsyncClient(timeout=300) as http:
            card = await A2ACardResolver(http, AGENT_URL).get_agent_card()
            self.assertEqual(card.name, AGENT)
            self.assertTrue(card.capabilities.streaming)
            self.assertEqual(card.supported_interfaces[0].url, AGENT_URL)
            self.assertEqual(card.supported_interfaces[0].protocol_binding, "JSONRPC")

            client = ClientFactory(ClientConfig(streaming=False, httpx_client=http)).create(card)
            replies = [event async for event in client.send_message(ask(QUESTION))]
            self.assertEqual(len(replies), 1)
            task = replies[0].task
            self.assertEqual(task.status.state, TaskState.TASK_STATE_COMPLETED, task)
            answer = get_artifact_text(task.artifacts[0])
            self.assertIn("apple", answer.lower())
            self.assertEqual(task.history[0].parts[0].text, QUESTION)

            # The same task read back, and the run it is in Symphony's own API.
            got = rpc("GetTask", {"id": task.id})["result"]
            self.assertEqual(got["status"]["state"], "TASK_STATE_COMPLETED")
            run = httpx.get(f"{BASE}/v1/agents/runs/{task.id}").json()
            self.assertEqual(run["answer"], answer)

            streaming = ClientFactory(ClientConfig(streaming=True, httpx_client=http)).create(card)
            kinds, states, text = [], [], ""
            async for event in streaming.send_message(ask(QUESTION)):
                kind = event.WhichOneof("payload")
                kinds.append(kind)
                if kind == "task":
                    states.append(event.task.status.state)
                elif kind == "status_update":
                    states.append(event.status_update.status.state)
                elif kind == "artifact_update":
                    text = get_artifact_text(event.artifact_update.artifact)
            self.assertEqual(kinds[0], "task")
            self.assertEqual(states[0], TaskState.TASK_STATE_SUBMITTED)
            self.assertIn(TaskState.TASK_STATE_WORKING, states)
            self.assertEqual(kinds[-2:], ["artifact_update", "status_update"])
            self.assertEqual(states[-1], TaskState.TASK_STATE_COMPLETED)
            self.assertIn("apple", text.lower())

    def test_errors_are_the_protocols(self):
        self.assertEqual(rpc("GetTask", {"id": "no-such-task"})["error"]["code"], -32001)
        self.assertEqual(rpc("message/send", {})["error"]["code"], -32601)
        bad = rpc("SendMessage", {"message": {"messageId": "m", "role": "user", "parts": []}})
        self.assertEqual(bad["error"]["code"], -32602)
        # A finished task cannot be cancelled.
        done = rpc("SendMessage", {"message": {"messageId": "m2", "role": "ROLE_USER",
                                               "parts": [{"text": QUESTION}]}})["result"]["task"]
        self.assertEqual(rpc("CancelTask", {"id": done["id"]})["error"]["code"], -32002)
        old = httpx.post(AGENT_URL, json={"jsonrpc": "2.0", "id": 1, "method": "GetTask",
                                          "params": {"id": done["id"]}},
                         headers={"A2A-Version": "0.3"})
        self.assertEqual(old.json()["error"]["code"], -32009)


if __name__ == "__main__":
    unittest.main()
