"""Property tests: any Service object (as JSON decodes it) either becomes a
:class:`ServiceRequest` or raises one :class:`ServiceRequestError` line naming
the field or annotation (issue 8, item 13). The questions the controller asks
of every Service event (:func:`is_ours`, :func:`current_ingress_ips`,
:func:`allocated_pool`, :func:`service_key`) never raise at all.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from ironlb.operator.allocator import ServiceRequest
from ironlb.operator.service_request import (
    ADDRESS_POOL,
    ALLOCATED_FROM_POOL,
    ALLOW_SHARED_IP,
    LOAD_BALANCER_IPS,
    ServiceRequestError,
    allocated_pool,
    current_ingress_ips,
    is_ours,
    parse_service,
    service_key,
)
from tests.props import PROPS, tried

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
IP_TEXT = st.one_of(
    st.sampled_from(
        [
            "198.18.10.5",
            "fd00::5",
            "198.18.10.5,fd00::5",
            "198.18.10.5, 198.18.10.6",
            " , ",
            "fe80::1%eth0",
            "198.18.10.5,",
            "\u0663.1.1.1",
        ]
    ),
    st.text(alphabet="0123456789abcdef.:, %", max_size=30),
)
ANNOTATIONS = st.one_of(
    JSON,
    st.fixed_dictionaries(
        {},
        optional={
            LOAD_BALANCER_IPS: st.one_of(IP_TEXT, JSON),
            ADDRESS_POOL: st.one_of(st.text(max_size=8), JSON),
            ALLOW_SHARED_IP: st.one_of(st.text(max_size=8), JSON),
            ALLOCATED_FROM_POOL: JSON,
        },
    ),
)
PORT = st.one_of(
    JSON,
    st.fixed_dictionaries(
        {},
        optional={
            "protocol": st.one_of(st.sampled_from(["TCP", "UDP", "SCTP", "tcp"]), JSON),
            "port": st.one_of(st.integers(-1, 70000), JSON),
        },
    ),
)
SPEC = st.one_of(
    JSON,
    st.fixed_dictionaries(
        {"type": st.one_of(st.just("LoadBalancer"), JSON)},
        optional={
            "loadBalancerClass": st.one_of(st.just("ironlb.io/ironlb"), JSON),
            "loadBalancerIP": st.one_of(IP_TEXT, JSON),
            "ipFamilies": st.one_of(
                st.lists(st.one_of(st.sampled_from(["IPv4", "IPv6"]), JSON), max_size=3), JSON
            ),
            "ipFamilyPolicy": st.one_of(
                st.sampled_from(["SingleStack", "PreferDualStack", "RequireDualStack"]), JSON
            ),
            "externalTrafficPolicy": st.one_of(st.sampled_from(["Cluster", "Local"]), JSON),
            "ports": st.one_of(st.lists(PORT, max_size=3), JSON),
            "selector": JSON,
        },
    ),
)
METADATA = st.one_of(
    JSON,
    st.fixed_dictionaries(
        {"name": st.one_of(st.just("web"), JSON)},
        optional={
            "namespace": st.one_of(st.just("default"), JSON),
            "annotations": ANNOTATIONS,
            "labels": JSON,
        },
    ),
)
STATUS = st.one_of(
    JSON,
    st.fixed_dictionaries(
        {"loadBalancer": st.one_of(JSON, st.fixed_dictionaries({"ingress": JSON}))}
    ),
)
SERVICE = st.one_of(
    JSON,
    st.fixed_dictionaries({"metadata": METADATA, "spec": SPEC}, optional={"status": STATUS}),
)
FIELDS = ("spec", "metadata", "annotation ironlb.io/")


@PROPS
@given(service=SERVICE)
def test_services_parse_or_refuse_in_one_line(service: Any) -> None:
    tried("Service fields and annotations")
    try:
        request = parse_service(service, {})
    except ServiceRequestError as exc:
        message = str(exc)
        assert "\n" not in message, message
        assert any(f in message for f in FIELDS), message
        return
    assert isinstance(request, ServiceRequest)


@PROPS
@given(service=SERVICE)
def test_event_questions_never_raise(service: Any) -> None:
    tried("Service fields and annotations")
    assert isinstance(is_ours(service, "ironlb.io/ironlb"), bool)
    assert isinstance(current_ingress_ips(service), tuple)
    pool = allocated_pool(service)
    assert pool is None or isinstance(pool, str)
    key = service_key(service)
    assert isinstance(key.namespace, str) and isinstance(key.name, str)
