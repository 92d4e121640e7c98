package ai.llava.client;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/** A clock that moves only when the client sleeps (or a test says), recording each sleep. */
final class FakeTiming implements Timing {

    long now;
    final List<Duration> sleeps = new ArrayList<>();

    @Override
    public long nanoTime() {
        return now;
    }

    @Override
    public void sleep(Duration duration) {
        sleeps.add(duration);
        now += duration.toNanos();
    }
}
