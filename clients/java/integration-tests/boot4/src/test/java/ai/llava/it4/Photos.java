package ai.llava.it4;

import javax.imageio.ImageIO;
import java.awt.Color;
import java.awt.Graphics2D;
import java.awt.image.BufferedImage;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;

/** A product photo made on the spot: a grey part on a light background. */
final class Photos {

    private Photos() {
    }

    static byte[] jpeg(int width, int height) {
        BufferedImage image = new BufferedImage(width, height, BufferedImage.TYPE_INT_RGB);
        Graphics2D g = image.createGraphics();
        g.setColor(new Color(235, 235, 230));
        g.fillRect(0, 0, width, height);
        g.setColor(new Color(120, 125, 140));
        g.fillOval(width / 5, height / 5, width * 3 / 5, height * 3 / 5);
        g.dispose();
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        try {
            ImageIO.write(image, "jpg", out);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return out.toByteArray();
    }

    /** Enums and a boolean only: any answer the gateway allows fits a small max-tokens. */
    record Verdict(Outcome verdict, boolean needsReview) {
        enum Outcome { pass, fail }
    }
}
