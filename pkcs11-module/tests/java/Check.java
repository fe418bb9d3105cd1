// Signs with a token key through Java's SunPKCS11 and verifies the signature with the JDK's own
// provider (SunRsaSign) under the entry's certificate.
// Usage: java Check.java P11.cfg PIN ALIAS
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.Provider;
import java.security.Security;
import java.security.Signature;
import java.security.cert.Certificate;

public class Check {
    public static void main(String[] args) throws Exception {
        Provider p = Security.getProvider("SunPKCS11").configure(args[0]);
        Security.addProvider(p);
        KeyStore ks = KeyStore.getInstance("PKCS11", p);
        ks.load(null, args[1].toCharArray());
        PrivateKey key = (PrivateKey) ks.getKey(args[2], null);
        Certificate cert = ks.getCertificate(args[2]);
        if (key == null || cert == null) {
            System.err.println("no key entry " + args[2]);
            System.exit(2);
        }
        byte[] message = "hsmkit through SunPKCS11".getBytes("UTF-8");
        Signature signer = Signature.getInstance("SHA256withRSA", p);
        signer.initSign(key);
        signer.update(message);
        byte[] sig = signer.sign();
        Signature verifier = Signature.getInstance("SHA256withRSA", "SunRsaSign");
        verifier.initVerify(cert.getPublicKey());
        verifier.update(message);
        if (!verifier.verify(sig)) {
            System.err.println("the signature does not verify");
            System.exit(3);
        }
        System.out.println("verified " + args[2]);
    }
}
