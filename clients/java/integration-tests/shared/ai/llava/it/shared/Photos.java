package ai.llava.it.shared;

import javax.imageio.ImageIO;
import java.awt.Color;
import java.awt.Graphics2D;
import java.awt.image.BufferedImage;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;

/** Product photos made on the spot: a grey part with a dark scratch. */
public final class Photos {

    private Photos() {
    }

    public static byte[] jpeg(int width, int height) {
        BufferedImage image = new BufferedImage(width, height, BufferedImage.TYPE_INT_RGB);
        Graphics2D g = image.createGraphics();
        g.setColor(new Color(230, 230, 225));
        g.fillRect(0, 0, width, height);
        g.setColor(new Color(140, 140, 150));
        g.fillRoundRect(width / 6, height / 6, width * 2 / 3, height * 2 / 3, 20, 20);
        g.setColor(Color.DARK_GRAY);
        g.drawLine(width / 4, height / 3, width * 2 / 3, height / 2);
        g.dispose();
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        try {
            ImageIO.write(image, "jpg", out);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return out.toByteArray();
    }
}
