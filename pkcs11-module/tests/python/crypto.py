"""python-pkcs11 against libhsmkit_pkcs11.so: the cryptography applications ask of a token, each
result checked independently (OpenSSL made the ciphertexts and checks the signature and the
agreement afterwards; Python's own hmac and published known answers check the rest).

Usage: python crypto.py MODULE TOKEN_LABEL USER_PIN WORKDIR

WORKDIR holds `pt`, `ct-pkcs1` and `ct-oaep` (OpenSSL's encryptions of `pt` under the token key
labelled "dec") and `peer-ec.der` (an OpenSSL P-256 public key). The script writes `py-ec.der`,
`py-ec.sig` (a P-256 key made on the token, its ECDSA-SHA256 signature of `pt`) and
`py-ecdh.bin` (its ECDH secret with the peer) for OpenSSL to check.
"""
import hashlib
import hmac
import os
import sys

import pkcs11
from pkcs11 import KDF, MGF, Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11.mechanisms import GCMParams
from pkcs11.util.ec import (
    decode_ec_public_key,
    encode_ec_public_key,
    encode_ecdsa_signature,
    encode_named_curve_parameters,
)

module, label, pin, work = sys.argv[1:5]


def path(name):
    return os.path.join(work, name)


def read(name):
    with open(path(name), "rb") as f:
        return f.read()


def write(name, data):
    with open(path(name), "wb") as f:
        f.write(data)


def secret(s, key_type, value, **flags):
    attrs = {
        Attribute.CLASS: ObjectClass.SECRET_KEY,
        Attribute.KEY_TYPE: key_type,
        Attribute.TOKEN: False,
        Attribute.VALUE: value,
    }
    for name, on in flags.items():
        attrs[getattr(Attribute, name.upper())] = on
    return s.create_object(attrs)


readable = {Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True}
token = pkcs11.lib(module).get_token(token_label=label)
with token.open(rw=True, user_pin=pin) as s:
    # RSA: OpenSSL's PKCS#1 v1.5 and OAEP-SHA256 ciphertexts, decrypted with the token's key.
    dec = s.get_key(object_class=ObjectClass.PRIVATE_KEY, label="dec")
    pt = read("pt")
    assert dec.decrypt(read("ct-pkcs1"), mechanism=Mechanism.RSA_PKCS) == pt, "PKCS#1 v1.5"
    oaep = (Mechanism.SHA256, MGF.SHA256, None)
    assert dec.decrypt(read("ct-oaep"), mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=oaep) == pt, "OAEP"

    # EC: a P-256 pair made on the token; its signature and public key go to OpenSSL.
    params = s.create_domain_parameters(
        KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True
    )
    pub, priv = params.generate_keypair(
        store=False, capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY | MechanismFlag.DERIVE
    )
    write("py-ec.der", encode_ec_public_key(pub))
    sig = priv.sign(pt, mechanism=Mechanism.ECDSA_SHA256)
    write("py-ec.sig", encode_ecdsa_signature(sig))
    digest_sig = priv.sign(hashlib.sha256(pt).digest(), mechanism=Mechanism.ECDSA)
    assert pub.verify(pt, digest_sig, mechanism=Mechanism.ECDSA_SHA256), "CKM_ECDSA over SHA-256 is ECDSA-SHA256"

    # ECDH with OpenSSL's key: the secret goes to OpenSSL to compare.
    peer = decode_ec_public_key(read("peer-ec.der"))
    shared = priv.derive_key(
        KeyType.GENERIC_SECRET,
        256,
        mechanism_param=(KDF.NULL, None, peer[Attribute.EC_POINT]),
        template=readable,
    )
    write("py-ecdh.bin", shared[Attribute.VALUE])

    # AES: SP 800-38A F.2.1 (CBC) and the GCM specification's test case 4.
    key = secret(s, KeyType.AES, bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c"), encrypt=True, decrypt=True)
    block_pt = bytes.fromhex(
        "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
        "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710"
    )
    iv = bytes(range(16))
    cbc = key.encrypt(block_pt, mechanism=Mechanism.AES_CBC, mechanism_param=iv)
    assert cbc.hex() == (
        "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2"
        "73bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7"
    ), "AES-CBC"
    padded = key.encrypt(b"fifteen bytes!!", mechanism=Mechanism.AES_CBC_PAD, mechanism_param=iv)
    assert len(padded) == 16 and key.decrypt(padded, mechanism=Mechanism.AES_CBC_PAD, mechanism_param=iv) == b"fifteen bytes!!"
    gcm_key = secret(s, KeyType.AES, bytes.fromhex("feffe9928665731c6d6a8f9467308308"), encrypt=True, decrypt=True)
    gcm = GCMParams(bytes.fromhex("cafebabefacedbaddecaf888"), bytes.fromhex("feedfacedeadbeeffeedfacedeadbeefabaddad2"))
    gcm_pt = bytes.fromhex(
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
        "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
    )
    gcm_ct = gcm_key.encrypt(gcm_pt, mechanism=Mechanism.AES_GCM, mechanism_param=gcm)
    assert gcm_ct.hex() == (
        "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
        "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091"
        "5bc94fbc3221a5db94fae95ae7121a47"
    ), "AES-GCM"
    assert gcm_key.decrypt(gcm_ct, mechanism=Mechanism.AES_GCM, mechanism_param=gcm) == gcm_pt

    # HMAC-SHA256 with a generic secret, against Python's own hmac.
    mac_key = b"hsmkit hmac key, 32 bytes long!!"
    mac = secret(s, KeyType.GENERIC_SECRET, mac_key, sign=True, verify=True)
    tag = mac.sign(pt, mechanism=Mechanism.SHA256_HMAC)
    assert tag == hmac.new(mac_key, pt, hashlib.sha256).digest(), "HMAC-SHA256"
    assert mac.verify(pt, tag, mechanism=Mechanism.SHA256_HMAC)

    # Derivation: CKM_AES_CBC_ENCRYPT_DATA gives SP 800-38A's first ciphertext block as the key.
    base = secret(s, KeyType.AES, bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c"), derive=True)
    derived = base.derive_key(
        KeyType.AES, 128, mechanism=Mechanism.AES_CBC_ENCRYPT_DATA, mechanism_param=(iv, block_pt[:16]), template=readable
    )
    assert derived[Attribute.VALUE].hex() == "7649abac8119b246cee98e9b12e9197d", "AES-CBC-ENCRYPT-DATA"

    # Wrap and unwrap: RFC 3394 §4.1.
    kek = secret(s, KeyType.AES, bytes.fromhex("000102030405060708090a0b0c0d0e0f"), wrap=True, unwrap=True)
    target = secret(s, KeyType.AES, bytes.fromhex("00112233445566778899aabbccddeeff"), extractable=True)
    wrapped = kek.wrap_key(target, mechanism=Mechanism.AES_KEY_WRAP)
    assert wrapped.hex() == "1fa68b0a8112b447aef34bd8fb5a7b829d3e862371d2cfe5", "RFC 3394"
    back = kek.unwrap_key(ObjectClass.SECRET_KEY, KeyType.AES, wrapped, mechanism=Mechanism.AES_KEY_WRAP, template=readable)
    assert back[Attribute.VALUE].hex() == "00112233445566778899aabbccddeeff", "unwrapped"

print("python-pkcs11: RSA decryption, EC, ECDH, AES, HMAC, derivation, wrap and unwrap ok")
