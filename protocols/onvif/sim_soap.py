"""SOAP 1.2 envelopes of the camera simulator: reading a request, writing the answers. Pure functions.

Requests are parsed with the standard library (the simulator runs one per demo cabinet: it loads no
zeep). Answers are written from templates with every inserted text escaped.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

from protocols.onvif.topics import TOPICS_NAMESPACE

ENV = "http://www.w3.org/2003/05/soap-envelope"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
DIGEST_TYPE = "PasswordDigest"
DEVICE_NS = "http://www.onvif.org/ver10/device/wsdl"
EVENTS_NS = "http://www.onvif.org/ver10/events/wsdl"
_NAMESPACES = (
    f'xmlns:env="{ENV}" xmlns:tds="{DEVICE_NS}" xmlns:tt="http://www.onvif.org/ver10/schema"'
    f' xmlns:tev="{EVENTS_NS}" xmlns:wsnt="http://docs.oasis-open.org/wsn/b-2"'
    ' xmlns:wsa="http://www.w3.org/2005/08/addressing" xmlns:ter="http://www.onvif.org/ver10/error"'
    f' xmlns:tns1="{TOPICS_NAMESPACE}"'
)
_DURATION = re.compile(r"^PT(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?$")


@dataclass(frozen=True, slots=True)
class UsernameToken:
    username: str
    password: str
    digest: bool
    nonce: str
    created: str


@dataclass(frozen=True, slots=True)
class SoapRequest:
    operation: str  # the local name of the Body's first child
    token: UsernameToken | None
    fields: dict[str, str] = field(default_factory=dict)  # local name -> text of the operation's children


class BadRequest(ValueError):
    """A request that is not a SOAP envelope the simulator understands."""


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def parse_request(body: bytes) -> SoapRequest:
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise BadRequest(f"not XML: {exc}") from exc
    if root.tag != f"{{{ENV}}}Envelope":
        raise BadRequest("not a SOAP 1.2 envelope")
    soap_body = root.find(f"{{{ENV}}}Body")
    if soap_body is None or len(soap_body) == 0:
        raise BadRequest("no operation in the Body")
    operation = soap_body[0]
    fields = {_local(child.tag): (child.text or "").strip() for child in operation}
    return SoapRequest(_local(operation.tag), _token(root), fields)


def _token(root: ET.Element) -> UsernameToken | None:
    token = root.find(f"{{{ENV}}}Header/{{{WSSE}}}Security/{{{WSSE}}}UsernameToken")
    if token is None:
        return None
    password = token.find(f"{{{WSSE}}}Password")
    return UsernameToken(
        username=token.findtext(f"{{{WSSE}}}Username", "").strip(),
        password=(password.text or "") if password is not None else "",
        digest=password is not None and password.get("Type", "").endswith(DIGEST_TYPE),
        nonce=token.findtext(f"{{{WSSE}}}Nonce", "").strip(),
        created=token.findtext(f"{{{WSU}}}Created", "").strip(),
    )


def digest_matches(token: UsernameToken, password: str) -> bool:
    """WS-Security UsernameToken digest: base64(sha1(nonce + created + password)); text is refused."""
    if not token.digest:
        return False
    try:
        nonce = base64.b64decode(token.nonce, validate=True)
    except (binascii.Error, ValueError):
        return False
    expected = hashlib.sha1(nonce + token.created.encode() + password.encode()).digest()
    return hmac.compare_digest(base64.b64encode(expected).decode(), token.password.strip())


def parse_duration_s(text: str, now: dt.datetime) -> float | None:
    """Seconds from an xs:duration (PT60S, PT1M) or from ``now`` to an absolute xs:dateTime."""
    match = _DURATION.match(text.strip())
    if match and any(match.groups()):
        hours, minutes, seconds = (float(part) if part else 0.0 for part in match.groups())
        return hours * 3600 + minutes * 60 + seconds
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return (when - now).total_seconds()


def iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def envelope(body: str) -> bytes:
    head = f'<?xml version="1.0" encoding="UTF-8"?><env:Envelope {_NAMESPACES}>'
    return f"{head}<env:Body>{body}</env:Body></env:Envelope>".encode()


def fault(code: str, subcode: str, reason: str) -> bytes:
    return envelope(
        f"<env:Fault><env:Code><env:Value>env:{code}</env:Value><env:Subcode><env:Value>{subcode}"
        "</env:Value></env:Subcode></env:Code><env:Reason>"
        f'<env:Text xml:lang="en">{escape(reason)}</env:Text></env:Reason>'
        "</env:Fault>"
    )


def device_information(manufacturer: str, model: str, firmware: str, serial: str) -> bytes:
    return envelope(
        f"<tds:GetDeviceInformationResponse><tds:Manufacturer>{escape(manufacturer)}</tds:Manufacturer>"
        f"<tds:Model>{escape(model)}</tds:Model><tds:FirmwareVersion>{escape(firmware)}</tds:FirmwareVersion>"
        f"<tds:SerialNumber>{escape(serial)}</tds:SerialNumber><tds:HardwareId>1.0</tds:HardwareId>"
        "</tds:GetDeviceInformationResponse>"
    )


def system_date_and_time(now: dt.datetime) -> bytes:
    utc = now.astimezone(dt.UTC)
    when = (
        f"<tt:Time><tt:Hour>{utc.hour}</tt:Hour><tt:Minute>{utc.minute}</tt:Minute>"
        f"<tt:Second>{utc.second}</tt:Second></tt:Time><tt:Date><tt:Year>{utc.year}</tt:Year>"
        f"<tt:Month>{utc.month}</tt:Month><tt:Day>{utc.day}</tt:Day></tt:Date>"
    )
    return envelope(
        "<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime><tt:DateTimeType>NTP</tt:DateTimeType>"
        "<tt:DaylightSavings>false</tt:DaylightSavings><tt:TimeZone><tt:TZ>UTC0</tt:TZ></tt:TimeZone>"
        f"<tt:UTCDateTime>{when}</tt:UTCDateTime><tt:LocalDateTime>{when}</tt:LocalDateTime>"
        "</tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>"
    )


def services(base_url: str, *, events: bool = True, events_base: str | None = None) -> bytes:
    listed = [(DEVICE_NS, base_url + "/onvif/device_service")]
    if events:
        listed.append((EVENTS_NS, (events_base or base_url) + "/onvif/events"))
    entries = "".join(
        f"<tds:Service><tds:Namespace>{namespace}</tds:Namespace>"
        f"<tds:XAddr>{escape(url)}</tds:XAddr>"
        "<tds:Version><tt:Major>2</tt:Major><tt:Minor>60</tt:Minor></tds:Version></tds:Service>"
        for namespace, url in listed
    )
    return envelope(f"<tds:GetServicesResponse>{entries}</tds:GetServicesResponse>")


def capabilities(base_url: str, *, events: bool = True, events_base: str | None = None) -> bytes:
    events_part = (
        f"<tt:Events><tt:XAddr>{escape(events_base or base_url)}/onvif/events</tt:XAddr>"
        "<tt:WSSubscriptionPolicySupport>false</tt:WSSubscriptionPolicySupport>"
        "<tt:WSPullPointSupport>true</tt:WSPullPointSupport>"
        "<tt:WSPausableSubscriptionManagerInterfaceSupport>false</tt:WSPausableSubscriptionManagerInterfaceSupport>"
        "</tt:Events>"
    )
    return envelope(
        "<tds:GetCapabilitiesResponse><tds:Capabilities>"
        f"<tt:Device><tt:XAddr>{escape(base_url)}/onvif/device_service</tt:XAddr></tt:Device>"
        f"{events_part if events else ''}</tds:Capabilities></tds:GetCapabilitiesResponse>"
    )


def subscription_created(address: str, now: dt.datetime, terminates: dt.datetime) -> bytes:
    return envelope(
        "<tev:CreatePullPointSubscriptionResponse><tev:SubscriptionReference>"
        f"<wsa:Address>{escape(address)}</wsa:Address></tev:SubscriptionReference>"
        f"<wsnt:CurrentTime>{iso(now)}</wsnt:CurrentTime><wsnt:TerminationTime>{iso(terminates)}"
        "</wsnt:TerminationTime></tev:CreatePullPointSubscriptionResponse>"
    )


def renewed(now: dt.datetime, terminates: dt.datetime) -> bytes:
    return envelope(
        f"<wsnt:RenewResponse><wsnt:TerminationTime>{iso(terminates)}</wsnt:TerminationTime>"
        f"<wsnt:CurrentTime>{iso(now)}</wsnt:CurrentTime></wsnt:RenewResponse>"
    )


def unsubscribed() -> bytes:
    return envelope("<wsnt:UnsubscribeResponse/>")


@dataclass(frozen=True, slots=True)
class Notification:
    topic: str  # path without prefix, e.g. Device/Trigger/DigitalInput
    when: dt.datetime
    operation: str  # Initialized, Changed
    source: tuple[str, str] | None  # (item name, value)
    data: tuple[str, str]


def notification(message: Notification) -> str:
    source = ""
    if message.source is not None:
        name, value = message.source
        source = f"<tt:Source><tt:SimpleItem Name={quoteattr(name)} Value={quoteattr(value)}/></tt:Source>"
    name, value = message.data
    return (
        '<wsnt:NotificationMessage><wsnt:Topic Dialect="http://www.onvif.org/ver10/tev/topicExpression/'
        f'ConcreteSet">tns1:{escape(message.topic)}</wsnt:Topic><wsnt:Message>'
        f'<tt:Message UtcTime="{iso(message.when)}" PropertyOperation="{message.operation}">{source}'
        f"<tt:Data><tt:SimpleItem Name={quoteattr(name)} Value={quoteattr(value)}/></tt:Data></tt:Message>"
        "</wsnt:Message></wsnt:NotificationMessage>"
    )


def pulled(now: dt.datetime, terminates: dt.datetime, messages: list[Notification]) -> bytes:
    return envelope(
        f"<tev:PullMessagesResponse><tev:CurrentTime>{iso(now)}</tev:CurrentTime>"
        f"<tev:TerminationTime>{iso(terminates)}</tev:TerminationTime>"
        f"{''.join(notification(message) for message in messages)}</tev:PullMessagesResponse>"
    )


# Malformed answers a broken firmware gives, by kind.
MALFORMED: dict[str, bytes] = {
    "garbage": b"<html><body>500 Internal Server Error<br><b>oops</i></body",
    "wrong_element": envelope(
        "<tds:GetHostnameResponse><tds:HostnameInformation/></tds:GetHostnameResponse>"
    ),
    "fault": fault("Receiver", "ter:Action", "the device is busy"),
    "empty": b"",
    # A fault with no subcode: it says nothing about whether our credentials were read.
    "bare_fault": envelope(
        "<env:Fault><env:Code><env:Value>env:Receiver</env:Value></env:Code><env:Reason>"
        '<env:Text xml:lang="en">internal error</env:Text></env:Reason></env:Fault>'
    ),
    # Well-formed, but a value the schema's type does not allow (zeep logs its traceback for it).
    "bad_value": system_date_and_time(dt.datetime(2026, 1, 1, tzinfo=dt.UTC)).replace(
        b"<tt:Year>", b"<tt:Year>x", 1
    ),
}
