package ai.llava.client;

import java.time.Duration;

/** The clock and the sleep of the retries: the real ones, or a test's. */
interface Timing {

    Timing SYSTEM = new Timing() {
        @Override
        public long nanoTime() {
            return System.nanoTime();
        }

        @Override
        public void sleep(Duration duration) throws InterruptedException {
            Thread.sleep(duration.toMillis(), duration.toNanosPart() % 1_000_000);
        }
    };

    long nanoTime();

    void sleep(Duration duration) throws InterruptedException;
}
