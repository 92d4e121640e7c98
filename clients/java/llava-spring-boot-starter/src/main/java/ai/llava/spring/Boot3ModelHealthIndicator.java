package ai.llava.spring;

import org.springframework.boot.actuate.health.Health;
import org.springframework.boot.actuate.health.HealthIndicator;
import org.springframework.boot.actuate.health.Status;

/** {@link ModelHealthCheck} as Spring Boot 3's HealthIndicator. */
public final class Boot3ModelHealthIndicator implements HealthIndicator {

    private final ModelHealthCheck check;

    public Boot3ModelHealthIndicator(ModelHealthCheck check) {
        this.check = check;
    }

    @Override
    public Health health() {
        ModelHealthCheck.View view = check.view();
        return Health.status(new Status(view.status())).withDetails(view.details()).build();
    }
}
