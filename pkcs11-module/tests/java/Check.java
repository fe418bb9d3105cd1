// Signs with a token key through Java's SunPKCS11 and verifies the signature with the JDK's own
// provider (SunRsaSign for RSA keys, SunEC for EC keys: SHA256withECDSA) under the entry's
// certificate.
// With a fourth argument "more": RSASSA-PSS and RSA/ECB/PKCS1Padding too.
// Usage: java Check.java P11.cfg PIN ALIAS [more]
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
        boolean ec = key.getAlgorithm().equals("EC");
        String alg = ec ? "SHA256withECDSA" : "SHA256withRSA";
        Signature signer = Signature.getInstance(alg, p);
        signer.initSign(key);
        signer.update(message);
        byte[] sig = signer.sign();
        Signature verifier = Signature.getInstance(alg, ec ? "SunEC" : "SunRsaSign");
        verifier.initVerify(cert.getPublicKey());
        verifier.update(message);
        if (!verifier.verify(sig)) {
            System.err.println("the signature does not verify");
            System.exit(3);
        }
        System.out.println("verified " + args[2] + " (" + alg + ")");
        if (args.length > 3 && args[3].equals("more")) {
            more(p, key, cert);
        }
    }

    /// RSASSA-PSS and RSA/ECB/PKCS1Padding through the token, checked by the JDK's software providers.
    static void more(Provider p, PrivateKey key, Certificate cert) throws Exception {
        byte[] message = "pss through SunPKCS11".getBytes("UTF-8");
        java.security.spec.PSSParameterSpec spec = new java.security.spec.PSSParameterSpec(
            "SHA-256", "MGF1", java.security.spec.MGF1ParameterSpec.SHA256, 32, 1);
        Signature pss = Signature.getInstance("RSASSA-PSS", p);
        pss.setParameter(spec);
        pss.initSign(key);
        pss.update(message);
        byte[] sig = pss.sign();
        Signature check = Signature.getInstance("RSASSA-PSS", "SunRsaSign");
        check.setParameter(spec);
        check.initVerify(cert.getPublicKey());
        check.update(message);
        if (!check.verify(sig)) {
            System.err.println("the RSASSA-PSS signature does not verify");
            System.exit(4);
        }
        System.out.println("RSASSA-PSS verified");
        javax.crypto.Cipher enc = javax.crypto.Cipher.getInstance("RSA/ECB/PKCS1Padding", "SunJCE");
        enc.init(javax.crypto.Cipher.ENCRYPT_MODE, cert.getPublicKey());
        byte[] ct = enc.doFinal("a PKCS#1 secret".getBytes("UTF-8"));
        javax.crypto.Cipher dec = javax.crypto.Cipher.getInstance("RSA/ECB/PKCS1Padding", p);
        dec.init(javax.crypto.Cipher.DECRYPT_MODE, key);
        String pt = new String(dec.doFinal(ct), "UTF-8");
        if (!pt.equals("a PKCS#1 secret")) {
            System.err.println("RSA/ECB/PKCS1Padding decrypted to something else");
            System.exit(5);
        }
        System.out.println("RSA/ECB/PKCS1Padding decrypted");
        byte[] secret = new byte[32];
        java.util.Arrays.fill(secret, (byte) 0x3c);
        javax.crypto.spec.SecretKeySpec hmacKey = new javax.crypto.spec.SecretKeySpec(secret, "HmacSHA256");
        javax.crypto.Mac token = javax.crypto.Mac.getInstance("HmacSHA256", p);
        token.init(hmacKey);
        byte[] tag = token.doFinal(message);
        javax.crypto.Mac soft = javax.crypto.Mac.getInstance("HmacSHA256", "SunJCE");
        soft.init(hmacKey);
        if (!java.util.Arrays.equals(tag, soft.doFinal(message))) {
            System.err.println("HmacSHA256 through the token differs from SunJCE's");
            System.exit(6);
        }
        System.out.println("HmacSHA256 matches");
        byte[] aesKey = new byte[32];
        java.util.Arrays.fill(aesKey, (byte) 0x42);
        javax.crypto.spec.SecretKeySpec aes = new javax.crypto.spec.SecretKeySpec(aesKey, "AES");
        javax.crypto.spec.IvParameterSpec iv = new javax.crypto.spec.IvParameterSpec(new byte[16]);
        byte[] plain = "AES through the token, in several parts".getBytes("UTF-8");
        javax.crypto.Cipher tokenAes = javax.crypto.Cipher.getInstance("AES/CBC/PKCS5Padding", p);
        tokenAes.init(javax.crypto.Cipher.ENCRYPT_MODE, aes, iv);
        java.io.ByteArrayOutputStream ctOut = new java.io.ByteArrayOutputStream();
        ctOut.write(tokenAes.update(plain, 0, 10));
        ctOut.write(tokenAes.doFinal(plain, 10, plain.length - 10));
        javax.crypto.Cipher softAes = javax.crypto.Cipher.getInstance("AES/CBC/PKCS5Padding", "SunJCE");
        softAes.init(javax.crypto.Cipher.DECRYPT_MODE, aes, iv);
        if (!java.util.Arrays.equals(softAes.doFinal(ctOut.toByteArray()), plain)) {
            System.err.println("AES/CBC/PKCS5Padding through the token does not decrypt with SunJCE");
            System.exit(7);
        }
        System.out.println("AES/CBC/PKCS5Padding matches");
        byte[] nonce = new byte[12];
        java.util.Arrays.fill(nonce, (byte) 9);
        javax.crypto.spec.GCMParameterSpec gcm = new javax.crypto.spec.GCMParameterSpec(128, nonce);
        javax.crypto.Cipher tokenGcm = javax.crypto.Cipher.getInstance("AES/GCM/NoPadding", p);
        tokenGcm.init(javax.crypto.Cipher.ENCRYPT_MODE, aes, gcm);
        tokenGcm.updateAAD("header".getBytes("UTF-8"));
        byte[] sealed = tokenGcm.doFinal(plain);
        javax.crypto.Cipher softGcm = javax.crypto.Cipher.getInstance("AES/GCM/NoPadding", "SunJCE");
        softGcm.init(javax.crypto.Cipher.DECRYPT_MODE, aes, gcm);
        softGcm.updateAAD("header".getBytes("UTF-8"));
        if (!java.util.Arrays.equals(softGcm.doFinal(sealed), plain)) {
            System.err.println("AES/GCM/NoPadding through the token does not open with SunJCE");
            System.exit(8);
        }
        System.out.println("AES/GCM/NoPadding matches");
        byte[] desKey = new byte[24];
        for (int i = 0; i < 24; i++) {
            desKey[i] = (byte) (0x10 + 2 * i + 1);
        }
        javax.crypto.spec.SecretKeySpec des = new javax.crypto.spec.SecretKeySpec(desKey, "DESede");
        javax.crypto.spec.IvParameterSpec desIv = new javax.crypto.spec.IvParameterSpec(new byte[8]);
        javax.crypto.Cipher tokenDes = javax.crypto.Cipher.getInstance("DESede/CBC/PKCS5Padding", p);
        tokenDes.init(javax.crypto.Cipher.ENCRYPT_MODE, des, desIv);
        byte[] desCt = tokenDes.doFinal(plain);
        javax.crypto.Cipher softDes = javax.crypto.Cipher.getInstance("DESede/CBC/PKCS5Padding", "SunJCE");
        softDes.init(javax.crypto.Cipher.DECRYPT_MODE, des, desIv);
        if (!java.util.Arrays.equals(softDes.doFinal(desCt), plain)) {
            System.err.println("DESede/CBC/PKCS5Padding through the token does not decrypt with SunJCE");
            System.exit(9);
        }
        System.out.println("DESede/CBC/PKCS5Padding matches");
    }
}
