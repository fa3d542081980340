"""Alert events to SNS and EventBridge through boto3, against a local AWS API (moto_server in its own process;
no AWS account is reachable from here). Messages are read back through SQS subscriptions."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from mlgov import events
from mlgov.settings import Settings
from tests.infra import free_port, unavailable


@pytest.fixture
def aws(monkeypatch, tmp_path):
    exe = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    if not Path(exe).exists():
        unavailable("moto_server not installed (pip install 'moto[server]')")
    port = free_port()
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            boto3.client("sns", region_name="us-east-1", endpoint_url=url).list_topics()
            break
        except Exception:
            assert time.time() < deadline and proc.poll() is None, "moto_server did not start"
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def _queue(url: str, name: str):
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=url)
    q = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return sqs, q, arn


def _drain(sqs, q) -> list[dict]:
    out = []
    for _ in range(5):
        msgs = sqs.receive_message(QueueUrl=q, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        out += [json.loads(m["Body"]) for m in msgs]
        if not msgs:
            break
    return out


def test_alert_events_published_to_sns_and_eventbridge(aws, db, tmp_path):
    sns = boto3.client("sns", region_name="us-east-1", endpoint_url=aws)
    topic = sns.create_topic(Name="mlgov-alerts")["TopicArn"]
    sqs, q_sns, arn_sns = _queue(aws, "from-sns")
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn_sns)
    eb = boto3.client("events", region_name="us-east-1", endpoint_url=aws)
    eb.create_event_bus(Name="mlgov-bus")
    _, q_eb, arn_eb = _queue(aws, "from-eventbridge")
    eb.put_rule(Name="all-mlgov", EventBusName="mlgov-bus", EventPattern=json.dumps({"source": ["mlgov"]}))
    eb.put_targets(Rule="all-mlgov", EventBusName="mlgov-bus", Targets=[{"Id": "q", "Arn": arn_eb}])
    settings = Settings(home=tmp_path, alert_sns_topic_arn=topic, alert_eventbridge_bus="mlgov-bus",
                        aws_endpoint_url=aws)
    with db.session_scope() as s:
        events.emit(s, "alert.opened", "a1", {"alert": "a1", "schedule": "dq"})
        events.emit(s, "version.registered", "g/1", {"group": "g"})          # not an alert: stays out
        events.emit(s, "alert.resolved", "a1", {"alert": "a1", "schedule": "dq"})
    assert events.publish_aws(db, settings) == 4      # 2 events × 2 sinks
    assert events.publish_aws(db, settings) == 0      # the cursor moved: nothing twice
    via_sns = [json.loads(m["Message"]) for m in _drain(sqs, q_sns)]
    assert [m["type"] for m in via_sns] == ["alert.opened", "alert.resolved"]
    via_eb = _drain(sqs, q_eb)
    assert sorted(m["detail-type"] for m in via_eb) == ["alert.opened", "alert.resolved"]
    assert via_eb[0]["detail"]["data"]["schedule"] == "dq"
