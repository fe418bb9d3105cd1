"""python-pkcs11 against libhsmkit_pkcs11.so: data objects and certificates, token and session,
private and public, and public session objects made without a login.

Usage: python check.py MODULE TOKEN_LABEL USER_PIN CERT.der
"""
import sys

import pkcs11
from pkcs11 import Attribute, CertificateType, ObjectClass

module, label, pin, cert_path = sys.argv[1:5]
token = pkcs11.lib(module).get_token(token_label=label)
der = open(cert_path, "rb").read()

with token.open(rw=True, user_pin=pin) as s:
    s.create_object({
        Attribute.CLASS: ObjectClass.DATA,
        Attribute.TOKEN: True,
        Attribute.LABEL: "py-data",
        Attribute.APPLICATION: "python-pkcs11",
        Attribute.VALUE: b"stored by python",
    })
    found = list(s.get_objects({Attribute.CLASS: ObjectClass.DATA, Attribute.APPLICATION: "python-pkcs11"}))
    assert len(found) == 1, found
    assert found[0][Attribute.VALUE] == b"stored by python"
    assert found[0][Attribute.PRIVATE] is True, "data objects are private unless asked otherwise"
    s.create_object({
        Attribute.CLASS: ObjectClass.CERTIFICATE,
        Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
        Attribute.TOKEN: True,
        Attribute.LABEL: "py-cert",
        Attribute.ID: b"\x07",
        Attribute.SUBJECT: b"0\x0f1\r0\x0b\x06\x03U\x04\x03\x0c\x04test",
        Attribute.VALUE: der,
    })
    certs = list(s.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.LABEL: "py-cert"}))
    assert len(certs) == 1 and certs[0][Attribute.VALUE] == der

# Without a login: the certificate is public, the data object private; a public session object
# can be made in a read-write public session.
with token.open(rw=True) as s:
    assert len(list(s.get_objects({Attribute.LABEL: "py-cert"}))) == 1
    assert list(s.get_objects({Attribute.LABEL: "py-data"})) == [], "private objects need the user"
    s.create_object({
        Attribute.CLASS: ObjectClass.DATA,
        Attribute.TOKEN: False,
        Attribute.PRIVATE: False,
        Attribute.LABEL: "py-public-session",
        Attribute.VALUE: b"x",
    })
    assert len(list(s.get_objects({Attribute.LABEL: "py-public-session"}))) == 1

with token.open(rw=True, user_pin=pin) as s:
    assert list(s.get_objects({Attribute.LABEL: "py-public-session"})) == [], "it went with its session"
    for o in s.get_objects({Attribute.LABEL: "py-data"}):
        o.destroy()
    assert list(s.get_objects({Attribute.LABEL: "py-data"})) == []

print("python-pkcs11: data objects, certificates and public session objects ok")
