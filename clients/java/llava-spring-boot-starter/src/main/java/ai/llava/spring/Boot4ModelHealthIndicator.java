package ai.llava.spring;

import org.springframework.boot.health.contributor.Health;
import org.springframework.boot.health.contributor.HealthIndicator;
import org.springframework.boot.health.contributor.Status;

/** {@link ModelHealthCheck} as Spring Boot 4's HealthIndicator (spring-boot-health). */
public final class Boot4ModelHealthIndicator implements HealthIndicator {

    private final ModelHealthCheck check;

    public Boot4ModelHealthIndicator(ModelHealthCheck check) {
        this.check = check;
    }

    @Override
    public Health health() {
        ModelHealthCheck.View view = check.view();
        return Health.status(new Status(view.status())).withDetails(view.details()).build();
    }
}
