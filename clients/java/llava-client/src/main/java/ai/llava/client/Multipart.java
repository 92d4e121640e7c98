package ai.llava.client;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.UUID;

/**
 * A multipart/form-data body (RFC 7578). The JDK HttpClient has no encoder and this is the
 * client's only form, a few lines, so no library is taken for it.
 */
final class Multipart {

    private final String boundary = "llava-" + UUID.randomUUID();
    private final ByteArrayOutputStream body = new ByteArrayOutputStream();

    Multipart field(String name, String value) {
        head("form-data; name=\"" + name + "\"", null);
        write(value.getBytes(StandardCharsets.UTF_8));
        write("\r\n");
        return this;
    }

    Multipart file(String name, String fileName, String contentType, byte[] bytes) {
        head("form-data; name=\"" + name + "\"; filename=\"" + fileName.replaceAll("[\"\\\\\r\n]", "_") + "\"",
                contentType);
        write(bytes);
        write("\r\n");
        return this;
    }

    String contentType() {
        return "multipart/form-data; boundary=" + boundary;
    }

    byte[] bytes() {
        write("--" + boundary + "--\r\n");
        return body.toByteArray();
    }

    private void head(String disposition, String contentType) {
        write("--" + boundary + "\r\nContent-Disposition: " + disposition + "\r\n"
                + (contentType == null ? "" : "Content-Type: " + contentType + "\r\n") + "\r\n");
    }

    private void write(String text) {
        write(text.getBytes(StandardCharsets.UTF_8));
    }

    private void write(byte[] bytes) {
        body.write(bytes, 0, bytes.length);
    }
}
