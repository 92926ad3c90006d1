"""Wire facts of the generated API that containerd clients depend on (no server involved).

Expected bytes are worked out by hand from the protobuf encoding rules: a field's tag is the
varint of (number << 3 | wire type), wire type 0 for varints and 2 for length-delimited data.
"""

from __future__ import annotations

import pytest
from google.protobuf.any_pb2 import Any
from google.protobuf.timestamp_pb2 import Timestamp

from agent.api.cgroups.v1 import metrics_pb2 as cg1
from agent.api.cgroups.v2 import metrics_pb2 as cg2
from agent.api.containerd.events import container_pb2, image_pb2, task_pb2
from agent.api.containerd.services.containers.v1 import containers_pb2, containers_pb2_grpc
from agent.api.containerd.services.content.v1 import content_pb2, content_pb2_grpc
from agent.api.containerd.services.events.v1 import events_pb2, events_pb2_grpc
from agent.api.containerd.services.images.v1 import images_pb2, images_pb2_grpc
from agent.api.containerd.services.introspection.v1 import (
    introspection_pb2,
    introspection_pb2_grpc,
)
from agent.api.containerd.services.leases.v1 import leases_pb2, leases_pb2_grpc
from agent.api.containerd.services.namespaces.v1 import namespace_pb2, namespace_pb2_grpc
from agent.api.containerd.services.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from agent.api.containerd.services.version.v1 import version_pb2, version_pb2_grpc
from agent.api.containerd.types import descriptor_pb2
from agent.api.containerd.types.task import task_pb2 as types_task_pb2
from agent.api.google.rpc import status_pb2
from agent.api.runc import options_pb2

ZERO_TIME_SECONDS = -62135596800  # 0001-01-01T00:00:00Z, Go's zero time.

# service module, service name, {method: (client streams, server streams)}
SERVICES = [
    (tasks_pb2, tasks_pb2_grpc, "Tasks", {
        name: (False, False)
        for name in (
            "Create", "Start", "Delete", "DeleteProcess", "Get", "List", "Kill", "Exec",
            "ResizePty", "CloseIO", "Pause", "Resume", "ListPids", "Checkpoint", "Update",
            "Metrics", "Wait",
        )
    }),
    (containers_pb2, containers_pb2_grpc, "Containers", {
        "Get": (False, False), "List": (False, False), "ListStream": (False, True),
        "Create": (False, False), "Update": (False, False), "Delete": (False, False),
    }),
    (events_pb2, events_pb2_grpc, "Events", {
        "Publish": (False, False), "Forward": (False, False), "Subscribe": (False, True),
    }),
    (content_pb2, content_pb2_grpc, "Content", {
        "Info": (False, False), "Update": (False, False), "List": (False, True),
        "Delete": (False, False), "Read": (False, True), "Status": (False, False),
        "ListStatuses": (False, False), "Write": (True, True), "Abort": (False, False),
    }),
    (images_pb2, images_pb2_grpc, "Images", {
        name: (False, False) for name in ("Get", "List", "Create", "Update", "Delete")
    }),
    (leases_pb2, leases_pb2_grpc, "Leases", {
        name: (False, False)
        for name in (
            "Create", "Delete", "List", "AddResource", "DeleteResource", "ListResources"
        )
    }),
    (namespace_pb2, namespace_pb2_grpc, "Namespaces", {
        name: (False, False) for name in ("Get", "List", "Create", "Update", "Delete")
    }),
    (version_pb2, version_pb2_grpc, "Version", {"Version": (False, False)}),
    (introspection_pb2, introspection_pb2_grpc, "Introspection", {
        "Plugins": (False, False), "Server": (False, False),
    }),
]


# grpc.Channel factory method -> (client streams, server streams)
CHANNEL_KINDS = {
    "unary_unary": (False, False),
    "unary_stream": (False, True),
    "stream_unary": (True, False),
    "stream_stream": (True, True),
}


class RecordingChannel:
    """Stands in for a grpc.Channel and records the method paths a stub binds."""

    def __init__(self) -> None:
        self.paths: dict[str, tuple[bool, bool]] = {}

    def __getattr__(self, kind: str):
        def bind(path: str, **_: object) -> None:
            self.paths[path] = CHANNEL_KINDS[kind]

        return bind


def numbers(message: type) -> dict[str, int]:
    return {f.name: f.number for f in message.DESCRIPTOR.fields}


@pytest.mark.parametrize(("module", "grpc_module", "name", "methods"), SERVICES,
                         ids=[s[2] for s in SERVICES])
def test_service_names_methods_and_streaming(module, grpc_module, name, methods) -> None:
    package = f"containerd.services.{name.lower()}.v1"
    service = module.DESCRIPTOR.services_by_name[name]
    assert service.full_name == f"{package}.{name}"
    assert [m.name for m in service.methods] == list(methods)
    assert {
        m.name: (m.client_streaming, m.server_streaming) for m in service.methods
    } == methods

    channel = RecordingChannel()
    getattr(grpc_module, f"{name}Stub")(channel)
    assert channel.paths == {f"/{package}.{name}/{m}": kind for m, kind in methods.items()}


def test_tasks_method_signatures() -> None:
    methods = tasks_pb2.DESCRIPTOR.services_by_name["Tasks"].methods_by_name
    assert len(methods) == 17
    returning_empty = {m.name for m in methods.values()
                       if m.output_type.full_name == "google.protobuf.Empty"}
    assert returning_empty == {
        "Kill", "Exec", "ResizePty", "CloseIO", "Pause", "Resume", "Update"
    }
    assert methods["Delete"].input_type.full_name == (
        "containerd.services.tasks.v1.DeleteTaskRequest"
    )
    assert methods["DeleteProcess"].output_type.full_name == (
        "containerd.services.tasks.v1.DeleteResponse"
    )
    version = version_pb2.DESCRIPTOR.services_by_name["Version"].methods_by_name["Version"]
    assert version.input_type.full_name == "google.protobuf.Empty"


def test_create_task_request_bytes() -> None:
    req = tasks_pb2.CreateTaskRequest(container_id="c", stdin="i", terminal=True)
    # 1:"c" (tag 0x0a), 4:"i" (tag 0x22), 7:true (tag 0x38)
    assert req.SerializeToString() == b"\x0a\x01c\x22\x01i\x38\x01"
    assert numbers(tasks_pb2.CreateTaskRequest) == {
        "container_id": 1, "rootfs": 3, "stdin": 4, "stdout": 5, "stderr": 6,
        "terminal": 7, "checkpoint": 8, "options": 9, "runtime_path": 10,
    }


def test_zero_values_are_not_sent() -> None:
    # ResizePty from `ctr run -t` under `script` carries width = height = 0: only the id travels.
    req = tasks_pb2.ResizePtyRequest(container_id="c", width=0, height=0)
    assert req.SerializeToString() == b"\x0a\x01c"
    assert tasks_pb2.KillRequest(container_id="c", signal=9, all=True).SerializeToString() == (
        b"\x0a\x01c\x18\x09\x20\x01"
    )


def test_process_and_status() -> None:
    assert numbers(types_task_pb2.Process) == {
        "container_id": 1, "id": 2, "pid": 3, "status": 4, "stdin": 5, "stdout": 6,
        "stderr": 7, "terminal": 8, "exit_status": 9, "exited_at": 10,
    }
    assert types_task_pb2.Process.DESCRIPTOR.full_name == "containerd.v1.types.Process"
    assert {v.name: v.number for v in types_task_pb2.Status.DESCRIPTOR.values} == {
        "UNKNOWN": 0, "CREATED": 1, "RUNNING": 2, "STOPPED": 3, "PAUSED": 4, "PAUSING": 5,
    }
    process = types_task_pb2.Process(id="r1", pid=300, status=types_task_pb2.RUNNING)
    # 2:"r1", 3:300 (varint ac 02), 4:RUNNING=2
    assert process.SerializeToString() == b"\x12\x02r1\x18\xac\x02\x20\x02"


def test_zero_time_timestamp_bytes() -> None:
    # A negative int64 is a ten-byte varint of its two's complement.
    wait = tasks_pb2.WaitResponse(exit_status=137, exited_at=Timestamp(seconds=ZERO_TIME_SECONDS))
    assert wait.SerializeToString() == (
        b"\x08\x89\x01" + b"\x12\x0b" + b"\x08\x80\x92\xb8\xc3\x98\xfe\xff\xff\xff\x01"
    )


def test_event_envelope_with_bare_type_url() -> None:
    assert numbers(events_pb2.Envelope) == {"timestamp": 1, "namespace": 2, "topic": 3, "event": 4}
    assert numbers(task_pb2.TaskExit) == {
        "container_id": 1, "id": 2, "pid": 3, "exit_status": 4, "exited_at": 5,
    }
    exit_event = task_pb2.TaskExit(container_id="c", id="c", pid=42, exit_status=137)
    exit_bytes = b"\x0a\x01c\x12\x01c\x18\x2a\x20\x89\x01"
    assert exit_event.SerializeToString() == exit_bytes
    type_url = task_pb2.TaskExit.DESCRIPTOR.full_name
    assert type_url == "containerd.events.TaskExit"
    envelope = events_pb2.Envelope(
        namespace="default", topic="/tasks/exit", event=Any(type_url=type_url, value=exit_bytes)
    )
    any_bytes = b"\x0a\x1a" + b"containerd.events.TaskExit" + b"\x12\x0b" + exit_bytes
    assert envelope.SerializeToString() == (
        b"\x12\x07default" + b"\x1a\x0b/tasks/exit" + b"\x22\x29" + any_bytes
    )


def test_event_type_names() -> None:
    assert numbers(task_pb2.TaskDelete) == {
        "container_id": 1, "pid": 2, "exit_status": 3, "exited_at": 4, "id": 5,
    }
    assert numbers(task_pb2.TaskCreate) == {
        "container_id": 1, "bundle": 2, "rootfs": 3, "io": 4, "checkpoint": 5, "pid": 6,
    }
    assert container_pb2.ContainerCreate.Runtime.DESCRIPTOR.full_name == (
        "containerd.events.ContainerCreate.Runtime"
    )
    # containerd declares the image events in the images service package.
    assert image_pb2.ImageCreate.DESCRIPTOR.full_name == "containerd.services.images.v1.ImageCreate"


def test_container_record() -> None:
    assert numbers(containers_pb2.Container) == {
        "id": 1, "labels": 2, "image": 3, "runtime": 4, "spec": 5, "snapshotter": 6,
        "snapshot_key": 7, "created_at": 8, "updated_at": 9, "extensions": 10,
    }
    runtime = containers_pb2.Container.Runtime(
        name="io.containerd.runc.v2", options=Any(type_url="containerd.runc.v1.Options")
    )
    assert runtime.SerializeToString() == (
        b"\x0a\x15io.containerd.runc.v2" + b"\x12\x1c\x0a\x1acontainerd.runc.v1.Options"
    )
    assert options_pb2.Options.DESCRIPTOR.full_name == "containerd.runc.v1.Options"
    assert options_pb2.ProcessDetails.DESCRIPTOR.full_name == "containerd.runc.v1.ProcessDetails"
    assert options_pb2.CheckpointOptions.DESCRIPTOR.full_name == (
        "containerd.runc.v1.CheckpointOptions"
    )


def test_cgroups_v1_metrics() -> None:
    assert cg1.Metrics.DESCRIPTOR.full_name == "io.containerd.cgroups.v1.Metrics"
    assert numbers(cg1.Metrics) == {
        "hugetlb": 1, "pids": 2, "cpu": 3, "memory": 4, "blkio": 5, "rdma": 6,
        "network": 7, "cgroup_stats": 8, "memory_oom_control": 9,
    }
    memory = numbers(cg1.MemoryStat)
    assert len(memory) == 36
    assert (memory["cache"], memory["rss"], memory["total_cache"], memory["total_unevictable"]) == (
        1, 2, 18, 32
    )
    assert (memory["usage"], memory["swap"], memory["kernel"], memory["kernel_tcp"]) == (
        33, 34, 35, 36
    )
    assert cg1.MemoryStat.DESCRIPTOR.fields_by_name["usage"].message_type.full_name == (
        "io.containerd.cgroups.v1.MemoryEntry"
    )
    # Field 33 needs a two-byte tag: (33 << 3 | 2) = 266 = varint 8a 02.
    metrics = cg1.Metrics(memory=cg1.MemoryStat(usage=cg1.MemoryEntry(usage=5)))
    assert metrics.SerializeToString() == b"\x22\x05\x8a\x02\x02\x10\x05"
    # Repeated scalars are packed in proto3: 4: [1, 300] as one length-delimited field.
    assert cg1.CPUUsage(per_cpu=[1, 300]).SerializeToString() == b"\x22\x03\x01\xac\x02"


def test_cgroups_v2_metrics() -> None:
    assert cg2.Metrics.DESCRIPTOR.full_name == "io.containerd.cgroups.v2.Metrics"
    assert numbers(cg2.Metrics) == {
        "pids": 1, "cpu": 2, "memory": 4, "rdma": 5, "io": 6, "hugetlb": 7, "memory_events": 8,
    }
    memory = numbers(cg2.MemoryStat)
    assert len(memory) == 35
    assert (memory["usage"], memory["usage_limit"], memory["swap_usage"], memory["swap_limit"]) == (
        32, 33, 34, 35
    )
    assert numbers(cg2.CPUStat) == {
        "usage_usec": 1, "user_usec": 2, "system_usec": 3, "nr_periods": 4,
        "nr_throttled": 5, "throttled_usec": 6,
    }
    assert cg2.MemoryStat(usage=1).SerializeToString() == b"\x80\x02\x01"


def test_introspection_and_content() -> None:
    assert numbers(introspection_pb2.Plugin)["init_err"] == 7
    plugin = introspection_pb2.Plugin(id="x", init_err=status_pb2.Status(message="skip plugin"))
    assert plugin.SerializeToString() == b"\x12\x01x" + b"\x3a\x0d\x12\x0bskip plugin"
    assert status_pb2.Status.DESCRIPTOR.full_name == "google.rpc.Status"
    assert {v.name: v.number for v in content_pb2.WriteAction.DESCRIPTOR.values} == {
        "STAT": 0, "WRITE": 1, "COMMIT": 2,
    }
    assert numbers(content_pb2.WriteContentRequest) == {
        "action": 1, "ref": 2, "total": 3, "expected": 4, "offset": 5, "data": 6, "labels": 7,
    }
    assert numbers(descriptor_pb2.Descriptor) == {
        "media_type": 1, "digest": 2, "size": 3, "annotations": 5,
    }
    assert numbers(images_pb2.Image) == {
        "name": 1, "labels": 2, "target": 3, "created_at": 7, "updated_at": 8,
    }
    assert numbers(leases_pb2.CreateRequest) == {"id": 1, "labels": 3}
