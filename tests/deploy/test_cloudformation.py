"""The ECS Fargate template lints clean and encodes the deployment's promises."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sitechat.observability import CHAT_METRICS

cfnlint_api = pytest.importorskip("cfnlint.api", reason="cfn-lint is not installed")
cfnlint_decode = pytest.importorskip("cfnlint.decode")

TEMPLATE = Path(__file__).resolve().parents[2] / "examples" / "aws" / "sitechat-ecs.yaml"

# Fargate's CPU units → the memory sizes (MiB) it accepts
FARGATE_MEMORY = {
    "256": range(512, 2049, 512),
    "512": range(1024, 4097, 1024),
    "1024": range(2048, 8193, 1024),
    "2048": range(4096, 16385, 1024),
    "4096": range(8192, 30721, 1024),
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    decoded, problems = cfnlint_decode.decode(str(TEMPLATE))
    assert not problems
    # plain JSON types: cfn-lint's nodes carry line numbers we do not need
    return json.loads(json.dumps(decoded))


def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def test_cfn_lint_reports_nothing() -> None:
    """cfn-lint, informational checks included, finds no problem in any of two regions."""
    config = cfnlint_api.ManualArgs(include_checks=["I"], regions=["us-east-1", "eu-west-1"])
    matches = cfnlint_api.lint_file(TEMPLATE, config=config)
    assert matches == [], "\n".join(str(m) for m in matches)


def test_task_sizes_are_valid_fargate_pairs(template: dict[str, Any]) -> None:
    """Every TaskSize maps to a CPU/memory pair Fargate accepts."""
    sizes = template["Mappings"]["TaskSizes"]
    assert set(sizes) == set(template["Parameters"]["TaskSize"]["AllowedValues"])
    for size in sizes.values():
        assert int(size["Memory"]) in FARGATE_MEMORY[size["Cpu"]]


def test_load_balancer_keeps_sessions_sticky_and_checks_health(template: dict[str, Any]) -> None:
    """Streamlit's websocket needs stickiness; health checks hit /_stcore/health."""
    [group] = resources_of(template, "AWS::ElasticLoadBalancingV2::TargetGroup").values()
    props = group["Properties"]
    attributes = {a["Key"]: a["Value"] for a in props["TargetGroupAttributes"]}
    assert attributes["stickiness.enabled"] == "true"
    assert attributes["stickiness.type"] == "lb_cookie"
    assert props["HealthCheckPath"] == "/_stcore/health"
    assert props["TargetType"] == "ip"
    [task] = resources_of(template, "AWS::ECS::TaskDefinition").values()
    [container] = task["Properties"]["ContainerDefinitions"]
    assert "/_stcore/health" in " ".join(container["HealthCheck"]["Command"])


def test_task_role_may_only_invoke_the_configured_models(template: dict[str, Any]) -> None:
    """The app's own role holds bedrock:InvokeModel* on the configured model ARNs only."""
    role = template["Resources"]["TaskRole"]["Properties"]
    assert "ManagedPolicyArns" not in role
    [policy] = role["Policies"]
    condition, document, otherwise = policy["Fn::If"]
    assert condition == "NeedsBedrock" and otherwise == {"Ref": "AWS::NoValue"}
    [statement] = document["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert sorted(statement["Action"]) == [
        "bedrock:InvokeModel",
        "bedrock:InvokeModelWithResponseStream",
    ]
    arns = [r["Fn::If"][1]["Fn::Sub"] for r in statement["Resource"]]
    assert all(":foundation-model/${" in arn for arn in arns)
    assert "*" not in json.dumps(statement["Resource"])


def test_secrets_come_from_secrets_manager(template: dict[str, Any]) -> None:
    """Keys and the DSN are injected by ECS from Secrets Manager, never as plain values."""
    [task] = resources_of(template, "AWS::ECS::TaskDefinition").values()
    [container] = task["Properties"]["ContainerDefinitions"]
    secret_names = {s["Fn::If"][1]["Name"] for s in container["Secrets"]}
    assert secret_names == {"SITECHAT_PGVECTOR__DSN", "SITECHAT_OPENAI__API_KEY"}
    env_names = {e["Name"] for e in _plain(container["Environment"])}
    assert not any("KEY" in name or "DSN" in name for name in env_names)
    execution = template["Resources"]["ExecutionRole"]["Properties"]["Policies"][0]["Fn::If"][1]
    [statement] = execution["PolicyDocument"]["Statement"]
    assert statement["Action"] == "secretsmanager:GetSecretValue"


def _plain(items: list[Any]) -> list[dict[str, Any]]:
    """List items with any Fn::If resolved to its 'true' branch."""
    return [item["Fn::If"][1] if "Fn::If" in item else item for item in items]


def test_container_has_limits_logs_and_metrics_on(template: dict[str, Any]) -> None:
    """CPU/memory limits, awslogs to the stack's log group, EMF metrics and JSON logs on."""
    [task] = resources_of(template, "AWS::ECS::TaskDefinition").values()
    [container] = task["Properties"]["ContainerDefinitions"]
    assert "Cpu" in container and "Memory" in container
    log = container["LogConfiguration"]
    assert log["LogDriver"] == "awslogs"
    assert log["Options"]["awslogs-group"] == {"Ref": "LogGroup"}
    env = {e["Name"]: e["Value"] for e in _plain(container["Environment"])}
    assert env["SITECHAT_METRICS__ENABLED"] == "true"
    assert env["SITECHAT_METRICS__SERVICE"] == {"Ref": "ServiceName"}
    assert env["SITECHAT_LOG__FORMAT"] == "json"
    assert env["SITECHAT_APP_ALLOW_INGEST"] == "false"
    assert resources_of(template, "AWS::Logs::LogGroup")


def test_target_tracking_auto_scaling(template: dict[str, Any]) -> None:
    """The service scales on average CPU with a target-tracking policy."""
    [policy] = resources_of(template, "AWS::ApplicationAutoScaling::ScalingPolicy").values()
    props = policy["Properties"]
    assert props["PolicyType"] == "TargetTrackingScaling"
    spec = props["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"]
    assert spec["PredefinedMetricType"] == "ECSServiceAverageCPUUtilization"


def test_alarms_watch_the_metrics_the_app_emits(template: dict[str, Any]) -> None:
    """Error-rate and latency alarms name metrics ChatMetrics writes, with its dimension."""
    alarms = resources_of(template, "AWS::CloudWatch::Alarm")
    own = {
        a["Properties"]["MetricName"]: a["Properties"]
        for a in alarms.values()
        if a["Properties"]["Namespace"] == {"Ref": "MetricsNamespace"}
    }
    assert {"ProviderErrors", "TimeToFirstToken"} <= set(own)
    for name, props in own.items():
        assert name in CHAT_METRICS
        assert props["Dimensions"] == [{"Name": "Service", "Value": {"Ref": "ServiceName"}}]
        assert props["TreatMissingData"] == "notBreaching"
    assert own["ProviderErrors"]["Statistic"] == "Average"  # 0/1 per answer: the error rate
    assert own["TimeToFirstToken"]["Unit"] == CHAT_METRICS["TimeToFirstToken"]
