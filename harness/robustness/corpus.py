"""RFC 4475 torture messages, rewritten for a test network.

Each case keeps what the RFC tortures (its odd whitespace, escapes, scalars, separators), but every
address is one of ours, so nothing can leave the test network: `$HOST` is the target's host, `$RURI`
the Request-URI host (the target for a user agent, the sink behind a proxy), `$PROBE` the prober's
host:port (top Via, so answers come back), `$SINK` an address of the test network that only
records, and `$BRANCH`, `$CALLID`, `$TAG` fresh per case so no two cases meet in a transaction.
`$CL` is the body length after substitution (cases that lie about it on purpose write a number).

`expect` names what RFC 3261 asks of the element, per kind of target:
  "valid"  a well-formed message: anything but 400 (or silence for responses nobody asked for);
  "400"    malformed but answerable (Via, From, To, Call-ID, CSeq all readable): 400;
  "505"    unknown SIP version (§8.2.2 ... 505);
  "416"    unsupported Request-URI scheme (§8.2.2.1, §16.3), "420" unknown Require (§8.2.2.3),
  "415"    unknown body type (§8.2.3), "406" unacceptable Accept (§8.2.2... RFC 4475 §3.3.15),
  "any"    only survival is asked (RFC 4475: "must not crash"), e.g. responses, missing Call-ID.
`expect_proxy` overrides it for proxies where RFC 3261 §16 differs (they forward what a UA would
reject: a proxy does not judge bodies, Accept or Require, only Proxy-Require).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    name: str
    section: str           # RFC 4475 section
    description: str
    template: str          # "\n" line ends become CRLF unless `raw`
    expect: str = "valid"
    expect_proxy: str | None = None
    raw: bool = False

    def expected(self, proxy: bool) -> str:
        return self.expect_proxy if proxy and self.expect_proxy is not None else self.expect


SDP = """v=0
o=mhandley 29739 7272939 IN IP4 $SINK
s=-
c=IN IP4 $SINK
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"""

_SDP_SHORT = """v=0
o=mhandley 29739 7272939 IN IP4 $SINK
s=-
c=IN IP4 $SINK
t=0 0
m=audio 49217 RTP/AVP 0
"""


CASES: tuple[Case, ...] = (
    # --- 3.1.1 valid messages ---------------------------------------------------------------------
    Case("wsinv", "3.1.1.1", "a short tortuous INVITE: folding, escapes, odd whitespace and case", """\
INVITE sip:vivekg@$RURI;unknownparam SIP/2.0
TO :
 sip:vivekg@$RURI ;   tag    = 1918181833n
from   : "J Rosenberg \\\\\\"" <sip:jdrosen@$SINK>
  ;
  tag = 98asjd8
MaX-fOrWaRdS: 0068
Call-ID: wsinv.$CALLID
Content-Length   : $CL
cseq: 0009
  INVITE
Via  : SIP  /   2.0
 /UDP
    $PROBE;branch=$BRANCH
s :
NewFangledHeader:   newfangled value
 continued newfangled value
UnknownHeaderWithUnusualValue: ;;,,;;,;
Content-Type: application/sdp
Route:
 <sip:$SINK;lr;unknownwith=value;unknown-no-value>
v:  SIP  / 2.0  / TCP     spindle.example.com   ;
  branch  =   z9hG4bK9ikj8  ,
 SIP  /    2.0   / UDP  192.168.255.111   ; branch=
 z9hG4bK30239
m:"Quoted string \\"\\"" <sip:jdrosen@$SINK> ; newparam =
      newvalue ;
  secondparam ; q = 0.33

""" + SDP),
    Case("intmeth", "3.1.1.2", "a method and header names using every token character", """\
!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/$'()@$RURI;lr SIP/2.0
Via: SIP/2.0/UDP $PROBE;branch=$BRANCH
Max-Forwards: 70
To: "BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/$'()@$RURI>
From: token1~` token2'+_ token3*%!.- <sip:mundane@$SINK>;fromParam''~+*_!.-%="\xd1\x80\xd0\xb0\xd0\xb1\xd0\xbe\xd1\x82\xd0\xb0\xd1\x8e\xd1\x89\xd0\xb8\xd0\xb9";tag=_token~1'+`*%!-.
Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/"][?}{
CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~
Contact: <sip:mundane@$SINK>
extensionHeader-!.%*+_`'~:\xef\xbb\xbf\xe5\xa4\xa7\xe5\x81\x9c\xe9\x9b\xbb
Content-Length: 0

""", expect="valid"),
    Case("esc01", "3.1.1.3", "valid % escaping in the Request-URI user, From and To", """\
INVITE sip:sips%3Auser%40example.com@$RURI SIP/2.0
To: sip:%75se%72@$RURI
From: <sip:I%20have%20spaces@$SINK>;tag=$TAG
Max-Forwards: 87
i: esc01.$CALLID
Via: SIP/2.0/UDP $PROBE;branch=$BRANCH
Contact: <sip:cal%6Cer@$SINK>
CSeq: 14 INVITE
Content-Type: application/sdp
l: $CL

""" + _SDP_SHORT),
    Case("escnull", "3.1.1.4", "escaped NULs (%00) in URIs", """\
REGISTER sip:$RURI SIP/2.0
To: sip:null-%00-null@$RURI
From: sip:null-%00-null@$RURI;tag=$TAG
Call-ID: escnull.$CALLID
CSeq: 1 REGISTER
Via: SIP/2.0/UDP $PROBE;branch=$BRANCH
Max-Forwards: 70
Contact: <sip:%00@$SINK>
Contact: <sip:%00%00@$SINK>
L:0

"""),
    Case("esc02", "3.1.1.5", "a % that is not an escape (in the method) and escapes in headers", """\
RE%47IST%45R sip:$RURI SIP/2.0
To: "%Z%45" <sip:resource@$RURI>
From: "%Z%45" <sip:resource@$RURI>;tag=$TAG
Max-Forwards: 70
Call-ID: esc02.$CALLID
CSeq: 29 RE%47IST%45R
Via: SIP/2.0/UDP $PROBE;branch=$BRANCH
Contact: <sip:alias1@$SINK>
Contact: <sip:alias%231@$SINK>
Contact: <sip:alias%33@$SINK>
Content-Length: 0

"""),
    Case("lwsdisp", "3.1.1.6", "no LWS between a quoted display name and <", """\
OPTIONS sip:user@$RURI SIP/2.0
To: sip:user@$RURI
From: caller<sip:caller@$SINK>;tag=$TAG
Max-Forwards: 70
Call-ID: lwsdisp.$CALLID
CSeq: 3882340 OPTIONS
Via: SIP/2.0/UDP $PROBE;branch=$BRANCH
l: 0

"""),
    Case("longreq", "3.1.1.7", "long values: URI user, tags, branch, Call-ID, display name, many Vias", """\
INVITE sip:user@$RURI SIP/2.0
To: "I have a user name of extremeextremeextremeextremeextremeextremeextremeextremeextremeextremeextremeextremeextremeextremeextremeextremeextremeextremeextreme proportion"<sip:user@$RURI:5060;unknownparam1=verylonguselessvalueverylonguselessvalueverylonguselessvalueverylonguselessvalueverylonguselessvalue;longparamnamelongparamnamelongparamnamelongparamnamelongparamnamelongparamnamelongparamname=shortvalue;verylongParameterNameWithNoValueverylongParameterNameWithNoValueverylongParameterNameWithNoValue>
F: sip:amazinglylongcallernameamazinglylongcallernameamazinglylongcallernameamazinglylongcallernameamazinglylongcallername@$SINK;tag=12982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982424;unknownheaderparamnamenamenamenamenamenamenamenamenamenamenamenamenamenamenamename=unknowheaderparamvaluevaluevaluevaluevaluevaluevaluevaluevaluevaluevaluevaluevaluevaluevalue;unknownValuelessparamnameparamnameparamnameparamnameparamnameparamnameparamnameparamnameparamname
Call-ID: longreq.onereallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallylongcallid.$CALLID
CSeq: 3882340 INVITE
Unknown-LongLongLongLongLongLongLongLongLongLongLongLongLongLongLongLongLongLongLongLongLongLongLongLong-Name: unknown-longlonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglong-value; unknown-longlonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglong-parameter-name = unknown-longlonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglong-parameter-value
Via: SIP/2.0/UDP $PROBE;branch=$BRANCH;received=$SINK
Via: SIP/2.0/TCP sip33.example.com
Via: SIP/2.0/TCP sip32.example.com
Via: SIP/2.0/TCP sip31.example.com
Via: SIP/2.0/TCP sip30.example.com
Via: SIP/2.0/TCP sip29.example.com
Via: SIP/2.0/TCP sip28.example.com
Via: SIP/2.0/TCP sip27.example.com
Via: SIP/2.0/TCP sip26.example.com
Via: SIP/2.0/TCP sip25.example.com
Via: SIP/2.0/TCP sip24.example.com
Via: SIP/2.0/TCP sip23.example.com
Via: SIP/2.0/TCP sip22.example.com
Via: SIP/2.0/TCP sip21.example.com
Via: SIP/2.0/TCP sip20.example.com
Via: SIP/2.0/TCP sip19.example.com
Via: SIP/2.0/TCP sip18.example.com
Via: SIP/2.0/TCP sip17.example.com
Via: SIP/2.0/TCP sip16.example.com
Via: SIP/2.0/TCP sip15.example.com
Via: SIP/2.0/TCP sip14.example.com
Via: SIP/2.0/TCP sip13.example.com
Via: SIP/2.0/TCP sip12.example.com
Via: SIP/2.0/TCP sip11.example.com
Via: SIP/2.0/TCP sip10.example.com
Via: SIP/2.0/TCP sip9.example.com
Via: SIP/2.0/TCP sip8.example.com
Via: SIP/2.0/TCP sip7.example.com
Via: SIP/2.0/TCP sip6.example.com
Via: SIP/2.0/TCP sip5.example.com
Via: SIP/2.0/TCP sip4.example.com
Via: SIP/2.0/TCP sip3.example.com
Via: SIP/2.0/TCP sip2.example.com
Via: SIP/2.0/TCP sip1.example.com
Via: SIP/2.0/TCP host.example.com;received=192.0.2.5;branch=verylonguselessvalueverylonguselessvalueverylonguselessvalueverylonguselessvalueverylonguselessvalueverylonguselessvalueverylonguselessvalueverylonguselessvalueverylonguselessvalue
Max-Forwards: 70
Contact: "amazinglylongcallernameamazinglylongcallernameamazinglylongcallernameamazinglylongcallernameamazinglylongcallername" <sip:amazinglylongcallernameamazinglylongcallernameamazinglylongcallernameamazinglylongcallernameamazinglylongcallername@$SINK:5060>
Content-Type: application/sdp
l: $CL

""" + _SDP_SHORT),
    Case("dblreq", "3.1.1.8", "extra octets after Content-Length in one datagram (a second request)", """\
REGISTER sip:$RURI SIP/2.0
To: sip:j.user@$RURI
From: sip:j.user@$RURI;tag=$TAG
Max-Forwards: 70
Call-ID: dblreq.$CALLID
CSeq: 8 REGISTER
Via: SIP/2.0/UDP $PROBE;branch=$BRANCH
Contact: <sip:j.user@$SINK>
l: 0

INVITE sip:joe@$RURI SIP/2.0
t: sip:joe@$RURI
From: sip:caller@$SINK;tag=141334
Max-Forwards: 8
Call-ID: dblreq.0ha0isnda977644900765@192.0.2.15
CSeq: 8 INVITE
Via: SIP/2.0/UDP $PROBE;branch=z9hG4bKdblreq-second
Content-Type: application/sdp
Content-Length: 151

""" + _SDP_SHORT),
    Case("semiuri", "3.1.1.9", "a semicolon in the user part of a URI", """\
OPTIONS sip:user;par=u%40example.net@$RURI SIP/2.0
To: sip:j_user@$RURI
From: sip:caller@$SINK;tag=$TAG
Max-Forwards: 70
Call-ID: semiuri.$CALLID
CSeq: 8 OPTIONS
Via: SIP/2.0/UDP $PROBE;branch=$BRANCH
l: 0

"""),
    Case("transports", "3.1.1.10", "Vias with varied and unknown transports", """\
OPTIONS sip:user@$RURI SIP/2.0
To: sip:user@$RURI
From: <sip:caller@$SINK>;tag=$TAG
Max-Forwards: 70
Call-ID: transports.$CALLID
CSeq: 1 OPTIONS
Via: SIP/2.0/UDP $PROBE;branch=$BRANCH
Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf
Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj
Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en
Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee
l: 0

"""),
    Case("mpart01", "3.1.1.11", "a multipart/mixed body (SDP plus an opaque part)", """\
MESSAGE sip:kumiko@$RURI SIP/2.0
Via: SIP/2.0/UDP $PROBE;branch=$BRANCH
Max-Forwards: 70
From: "Nobuko" <sip:nobuko@$SINK>;tag=$TAG
To: "Kumiko" <sip:kumiko@$RURI>
Call-ID: mpart01.$CALLID
CSeq: 1 MESSAGE
Content-Type: multipart/mixed;boundary=7a9cbec02ceef655
Content-Length: $CL

--7a9cbec02ceef655
Content-Type: text/plain
Content-Transfer-Encoding: binary

Hello
--7a9cbec02ceef655
Content-Type: application/octet-stream
Content-Transfer-Encoding: binary

\x30\x82\x01\x52\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02\xa0
--7a9cbec02ceef655--
""", expect="any"),
    Case("unreason", "3.1.1.12", "a response with an unusual reason phrase (nobody asked for it)", """\
SIP/2.0 200 = 2**3 * 5**2 \xd0\xbd\xd0\xbe \xd1\x81\xd1\x82\xd0\xbe \xd0\xb4\xd0\xb5\xd0\xb2\xd1\x8f\xd0\xbd\xd0\xbe\xd1\x81\xd1\x82\xd0\xbe \xd0\xb4\xd0\xb5\xd0\xb2\xd1\x8f\xd1\x82\xd1\x8c - \xd0\xbf\xd1\x80\xd0\xbe\xd1\x81\xd1\x82\xd0\xbe\xd0\xb5
Via: SIP/2.0/UDP $HOST;branch=$BRANCH
Call-ID: unreason.$CALLID
CSeq: 35 INVITE
From: <sip:user@$RURI>;tag=11141343
To: <sip:user@$SINK>;tag=$TAG
Content-Length: 0

""", expect="any"),
    Case("noreason", "3.1.1.13", "a response with an empty reason phrase", """\
SIP/2.0 100 \r
Via: SIP/2.0/UDP $HOST;branch=$BRANCH
Call-ID: noreason.$CALLID
From: <sip:user@$RURI>;tag=38923
To: <sip:user@$SINK>;tag=$TAG
CSeq: 5 INVITE
Content-Length: 0

""", expect="any"),
    # --- 3.1.2 invalid messages -------------------------------------------------------------------
    Case("badinv01", "3.1.2.1", "extraneous header field separators in Via and Contact", """\
INVITE sip:user@$RURI SIP/2.0
To: sip:j.user@$RURI
From: sip:caller@$SINK;tag=$TAG
Max-Forwards: 7
Call-ID: badinv01.$CALLID
CSeq: 8 INVITE
Via: SIP/2.0/UDP $PROBE;;,;,,
Contact: "Joe" <sip:joe@$SINK>;;;;
Content-Length: $CL
Content-Type: application/sdp

""" + _SDP_SHORT, expect="any"),
    Case("clerr", "3.1.2.2", "Content-Length larger than the message", """\
INVITE sip:user@$RURI SIP/2.0
Max-Forwards: 80
To: sip:j.user@$RURI
From: sip:caller@$SINK;tag=$TAG
Call-ID: clerr.$CALLID
CSeq: 8 INVITE
Via: SIP/2.0/UDP $PROBE;branch=$BRANCH
Content-Type: application/sdp
Content-Length: 9999

""" + _SDP_SHORT, expect="400"),
    Case("scalar02", "3.1.2.3", "a negative Content-Length", """\
INVITE sip:user@$RURI SIP/2.0
Max-Forwards: 254
To: sip:j.user@$RURI
From: sip:caller@$SINK;tag=$TAG
Call-ID: scalar02.$CALLID
CSeq: 5 INVITE
Via: SIP/2.0/UDP $PROBE;branch=$BRANCH
Content-Type: application/sdp
Content-Length: -999

""" + _SDP_SHORT, expect="400"),
    Case("scalarlg", "3.1.2.4", "overlarge CSeq, Max-Forwards, Expires and Contact expires", """\
REGISTER sip:$RURI SIP/2.0
Via: SIP/2.0/UDP $PROBE;branch=$BRANCH
To: <sip:user@$RURI>
From: <sip:user@$RURI>;tag=$TAG
Call-ID: scalarlg.$CALLID
CSeq: 36893488147419103232 REGISTER
Max-Forwards: 300
Expires: 1000000000000000000000000000000000000000000000000000000000000000000000000000000000
Contact: <sip:user@$SINK>;expires=280297596632815
Content-Length: 0

""", expect="400"),
    Case("scalar1", "3.1.2.5", "a response with overlarge scalar values (nobody asked for it)", """\
SIP/2.0 503 Service Unavailable
Via: SIP/2.0/TCP $HOST;branch=$BRANCH
To: <sip:user@$RURI>;tag=2364982390
From: <sip:other@$SINK>;tag=$TAG
Call-ID: scalar1.$CALLID
CSeq: 1 OPTIONS
Retry-After: 949302838503028349304023988
Warning: 1812 overture "In Progress"
Content-Length: 0

""", expect="any"),
    Case("quotbal", "3.1.2.6", "an unterminated quoted string in the To display name", """\
INVITE sip:user@$RURI SIP/2.0
To: "Mr. J. User <sip:j.user@$RURI>
From: sip:caller@$SINK;tag=$TAG
Max-Forwards: 70
Call-ID: quotbal.$CALLID
CSeq: 8 INVITE
Via: SIP/2.0/UDP $PROBE;branch=$BRANCH
Content-Type: application/sdp
Content-Length: $CL

""" + _SDP_SHORT, expect="400"),
    Case("ltgtruri", "3.1.2.7", "a Request-URI enclosed in <>", """\
INVITE <sip:user@$RURI> SIP/2.0
To: sip:user@$RURI
From: sip:caller@$SINK;tag=$TAG
Call-ID: ltgtruri.$CALLID
CSeq: 1 INVITE
Via: SIP/2.0/UDP $PROBE;branch=$BRANCH
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: $CL

""" + _SDP_SHORT, expect="400"),
    Case("lwsruri", "3.1.2.8", "whitespace inside the Request-URI", """\
INVITE sip:user@$RURI;lr; transport=udp SIP/2.0
To: sip:user@$RURI
From: sip:caller@$SINK;tag=$TAG
Call-ID: lwsruri.$CALLID
CSeq: 1 INVITE
Via: SIP/2.0/UDP $PROBE;branch=$BRANCH
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: $CL

""" + _SDP_SHORT, expect="400"),
    Case("lwsstart", "3.1.2.9", "several SP between the Request-Line elements", """\
INVITE  sip:user@$RURI  SIP/2.0
Max-Forwards: 8
To: sip:user@$RURI
From: sip:caller@$SINK;tag=$TAG
Call-ID: lwsstart.$CALLID
CSeq: 1 INVITE
Via: SIP/2.0/UDP $PROBE;branch=$BRANCH
Content-Type: application/sdp
Content-Length: $CL

""" + _SDP_SHORT, expect="400"),
    Case("trws", "3.1.2.10", "SP characters at the end of the Request-Line", "OPTIONS sip:remote-target@$RURI SIP/2.0  \n" + """\
Via: SIP/2.0/TCP $PROBE;branch=$BRANCH
To: <sip:remote-target@$RURI>
From: <sip:local-resource@$SINK>;tag=$TAG
Call-ID: trws.$CALLID
CSeq: 1 OPTIONS
Max-Forwards: 70
l: 0

""", expect="400"),
    Case("escruri", "3.1.2.11", "escaped headers in the Request-URI", """\
INVITE sip:user@$RURI?Route=%3Csip:$SINK%3E SIP/2.0
To: sip:user@$RURI
From: sip:caller@$SINK;tag=$TAG
Call-ID: escruri.$CALLID
CSeq: 1 INVITE
Via: SIP/2.0/UDP $PROBE;branch=$BRANCH
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: $CL

""" + _SDP_SHORT, expect="400"),
    Case("baddate", "3.1.2.12", "a Date with a time zone other than GMT", """\
INVITE sip:user@$RURI SIP/2.0
To: sip:user@$RURI
From: sip:caller@$SINK;tag=$TAG
Call-ID: baddate.$CALLID
CSeq: 1 INVITE
Via: SIP/2.0/UDP $PROBE;branch=$BRANCH
Max-Forwards: 70
Date: Fri, 01 Jan 2010 16:00:00 EST
Contact: <sip:caller@$SINK>
Content-Type: application/sdp
Content-Length: $CL

""" + _SDP_SHORT, expect="any"),
    Case("regbadct", "3.1.2.13", "a Contact name-addr URI with parameters not enclosed in <>", """\
REGISTER sip:$RURI SIP/2.0
To: sip:user@$RURI
From: sip:user@$RURI;tag=$TAG
Max-Forwards: 70
Call-ID: regbadct.$CALLID
CSeq: 1 REGISTER
Via: SIP/2.0/UDP $PROBE;branch=$BRANCH
Contact: sip:user@$SINK?Route=%3Csip:sip.example.com%3E
l: 0

""", expect="any"),
    Case("badaspec", "3.1.2.14", "spaces inside an addr-spec between < and >", """\
OPTIONS sip:user@$RURI SIP/2.0
Via: SIP/2.0/UDP $PROBE;branch=$BRANCH
Max-Forwards: 70
From: "Bell, Alexander" <sip:a.g.bell@$SINK>;tag=$TAG
To: "Watson, Thomas" < sip:t.watson@$RURI >
Call-ID: badaspec.$CALLID
CSeq: 3 OPTIONS
l: 0

""", expect="400"),
    Case("baddn", "3.1.2.15", "non-token characters in an unquoted display name", """\
OPTIONS sip:t.watson@$RURI SIP/2.0
Via: SIP/2.0/UDP $PROBE;branch=$BRANCH
Max-Forwards: 70
From: Bell, Alexander <sip:a.g.bell@$SINK>;tag=$TAG
To: Watson, Thomas <sip:t.watson@$RURI>
Call-ID: baddn.$CALLID
CSeq: 3 OPTIONS
l: 0

""", expect="400"),
    Case("badvers", "3.1.2.16", "an unknown protocol version (SIP/7.0)", """\
OPTIONS sip:t.watson@$RURI SIP/7.0
Via: SIP/7.0/UDP $PROBE;branch=$BRANCH
Max-Forwards: 70
From: A. Bell <sip:a.g.bell@$SINK>;tag=$TAG
To: T. Watson <sip:t.watson@$RURI>
Call-ID: badvers.$CALLID
CSeq: 1 OPTIONS
l: 0

""", expect="505"),
    Case("mismatch01", "3.1.2.17", "Request-Line method and CSeq method differ", """\
OPTIONS sip:user@$RURI SIP/2.0
To: sip:j.user@$RURI
From: sip:caller@$SINK;tag=$TAG
Max-Forwards: 70
Call-ID: mismatch01.$CALLID
CSeq: 8 INVITE
Via: SIP/2.0/UDP $PROBE;branch=$BRANCH
l: 0

""", expect="400"),
    Case("mismatch02", "3.1.2.18", "an unknown method whose CSeq names another", """\
NEWMETHOD sip:user@$RURI SIP/2.0
To: sip:j.user@$RURI
From: sip:caller@$SINK;tag=$TAG
Max-Forwards: 70
Call-ID: mismatch02.$CALLID
CSeq: 8 INVITE
Contact: <sip:caller@$SINK>
Via: SIP/2.0/UDP $PROBE;branch=$BRANCH
Content-Type: application/sdp
l: $CL

""" + _SDP_SHORT, expect="400"),
    Case("bigcode", "3.1.2.19", "an overlarge response code (nobody asked for it)", """\
SIP/2.0 4294967301 better not break the receiver
Via: SIP/2.0/UDP $HOST;branch=$BRANCH
Call-ID: bigcode.$CALLID
CSeq: 353494 INVITE
From: <sip:user@$RURI>;tag=39ansfi3
To: <sip:user@$SINK>;tag=$TAG
Content-Length: 0

""", expect="any"),
    # --- 3.2 / 3.3 transaction and application layer ------------------------------------------------
    Case("badbranch", "3.2.1", "a branch that is only the magic cookie", """\
OPTIONS sip:user@$RURI SIP/2.0
To: sip:user@$RURI
From: sip:caller@$SINK;tag=$TAG
Max-Forwards: 70
Call-ID: badbranch.$CALLID
CSeq: 8 OPTIONS
Via: SIP/2.0/UDP $PROBE;branch=z9hG4bK
l: 0

""", expect="valid"),
    Case("insuf", "3.3.1", "no Call-ID, From or To: nothing to answer with", """\
INVITE sip:user@$RURI SIP/2.0
CSeq: 193942 INVITE
Via: SIP/2.0/UDP $PROBE;branch=$BRANCH
Content-Type: application/sdp
l: $CL

""" + _SDP_SHORT, expect="any"),
    Case("unkscm", "3.3.2", "a Request-URI with an unknown scheme", """\
OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0
To: sip:user@$RURI
From: sip:caller@$SINK;tag=$TAG
Max-Forwards: 70
Call-ID: unkscm.$CALLID
CSeq: 3923423 OPTIONS
Via: SIP/2.0/UDP $PROBE;branch=$BRANCH
l: 0

""", expect="416"),
    Case("novelsc", "3.3.3", "a Request-URI with a known but atypical scheme", """\
OPTIONS soap.beep://$SINK:3002 SIP/2.0
To: sip:user@$RURI
From: sip:caller@$SINK;tag=$TAG
Max-Forwards: 70
Call-ID: novelsc.$CALLID
CSeq: 3923423 OPTIONS
Via: SIP/2.0/UDP $PROBE;branch=$BRANCH
l: 0

""", expect="416"),
    Case("unksm2", "3.3.4", "unknown URI schemes in To, From and Contact", """\
REGISTER sip:$RURI SIP/2.0
To: isbn:2983792873
From: <http://www.example.com>;tag=$TAG
Call-ID: unksm2.$CALLID
CSeq: 329842 REGISTER
Contact: <name:John_Smith>
Via: SIP/2.0/UDP $PROBE;branch=$BRANCH
Max-Forwards: 70
l: 0

""", expect="valid"),
    Case("bext01", "3.3.5", "Require and Proxy-Require with unknown option tags", """\
OPTIONS sip:user@$RURI SIP/2.0
To: sip:j_user@$RURI
From: sip:caller@$SINK;tag=$TAG
Max-Forwards: 70
Call-ID: bext01.$CALLID
CSeq: 8 OPTIONS
Via: SIP/2.0/UDP $PROBE;branch=$BRANCH
Require: nothingSupportsThis, nothingSupportsThisEither
Proxy-Require: noProxiesSupportThis, norDoAnyProxiesSupportThis
Content-Length: 0

""", expect="420"),
    Case("invut", "3.3.6", "an INVITE whose body is of an unknown type", """\
INVITE sip:user@$RURI SIP/2.0
Contact: <sip:caller@$SINK>
To: sip:j.user@$RURI
From: sip:caller@$SINK;tag=$TAG
Max-Forwards: 70
Call-ID: invut.$CALLID
CSeq: 8 INVITE
Via: SIP/2.0/UDP $PROBE;branch=$BRANCH
Content-Type: application/unknownformat
Content-Length: 40

<audio> <pcmu port="443"/> </audio>
\x20\x20\x20
""", expect="415", expect_proxy="valid"),
    Case("multi01", "3.3.8", "several values in single-value header fields", """\
INVITE sip:user@$RURI SIP/2.0
Via: SIP/2.0/UDP $PROBE;branch=$BRANCH
Max-Forwards: 70
CSeq: 122 INVITE
To: sip:user@$RURI
From: "caller" <sip:caller@$SINK>;tag=$TAG
Call-ID: multi01.$CALLID
Contact: sip:caller@$SINK
Call-ID: multi01.98asdh@192.0.2.2
CSeq: 121 INVITE
From: sip:caller@$SINK;tag=3413415
To: sip:user@$SINK
Content-Type: application/sdp
Content-Length: $CL

""" + _SDP_SHORT, expect="400"),
    Case("mcl01", "3.3.9", "two Content-Length header fields", """\
OPTIONS sip:user@$RURI SIP/2.0
Via: SIP/2.0/UDP $PROBE;branch=$BRANCH
To: sip:user@$RURI
From: sip:caller@$SINK;tag=$TAG
Max-Forwards: 70
Call-ID: mcl01.$CALLID
CSeq: 15932 OPTIONS
Content-Length: 13
Max-Forwards: 60
Content-Length: 5
Content-Type: text/plain

There's no way to know how many octets are supposed to be here.
""", expect="400"),
    Case("bcast", "3.3.10", "a 200 whose Via names a broadcast address (nobody asked for it)", """\
SIP/2.0 200 OK
Via: SIP/2.0/UDP 192.0.2.198;branch=$BRANCH
Via: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK1saber23
Call-ID: bcast.$CALLID
CSeq: 2 INVITE
From: <sip:user@$SINK>;tag=$TAG
To: <sip:user@$RURI>;tag=932298
Content-Length: 0

""", expect="any"),
    Case("zeromf", "3.3.11", "Max-Forwards of zero", """\
OPTIONS sip:user@$RURI SIP/2.0
To: sip:user@$RURI
From: sip:caller@$SINK;tag=$TAG
Call-ID: zeromf.$CALLID
CSeq: 39234321 OPTIONS
Via: SIP/2.0/UDP $PROBE;branch=$BRANCH
Max-Forwards: 0
l: 0

""", expect="valid", expect_proxy="483"),
    Case("sdp01", "3.3.15", "an INVITE whose Accept excludes every body type the answer could have", """\
INVITE sip:user@$RURI SIP/2.0
To: sip:j_user@$RURI
Contact: <sip:caller@$SINK>
From: sip:caller@$SINK;tag=$TAG
Call-ID: sdp01.$CALLID
CSeq: 8 INVITE
Max-Forwards: 70
Via: SIP/2.0/UDP $PROBE;branch=$BRANCH
Accept: text/nobodyKnowsThis
Content-Type: application/sdp
Content-Length: $CL

""" + _SDP_SHORT, expect="406", expect_proxy="valid"),
    Case("inv2543", "3.4.1", "an INVITE in RFC 2543 syntax (no magic cookie, no Max-Forwards)", """\
INVITE sip:UserB@$RURI SIP/2.0
Via: SIP/2.0/UDP $PROBE
From: <sip:UserA@$SINK>;tag=$TAG
To: <sip:UserB@$RURI>
Call-ID: inv2543.$CALLID
CSeq: 1 INVITE
Contact: <sip:UserA@$SINK>
Content-Type: application/sdp
Content-Length: $CL

""" + _SDP_SHORT, expect="valid"),
)

BY_NAME = {case.name: case for case in CASES}


def render(case: Case, values: dict[str, str]) -> bytes:
    """The case's bytes with every placeholder filled in and CRLF line ends (latin-1 text)."""
    text = case.template
    if not case.raw:
        text = text.replace("\r\n", "\n").replace("\n", "\r\n")
    head, sep, body = text.partition("\r\n\r\n")
    for key in sorted(values, key=len, reverse=True):
        head, body = head.replace(f"${key}", values[key]), body.replace(f"${key}", values[key])
    head = head.replace("$CL", str(len(body.encode("latin-1"))))
    return (head + sep + body).encode("latin-1")
