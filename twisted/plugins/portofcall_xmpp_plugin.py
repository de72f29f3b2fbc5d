from twisted.application.service import ServiceMaker

portofcall_xmpp = ServiceMaker(
    "portofcall-xmpp",
    "portofcall_xmpp.tap",
    "An HTTP JSON service that probes XMPP servers",
    "portofcall-xmpp",
)
